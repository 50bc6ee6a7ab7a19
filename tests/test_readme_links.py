"""The documentation's links land somewhere: in the README, ARCHITECTURE.md, the two folder READMEs and every
page of ``docs/``, every ``](#anchor)`` names a heading of the same page (GitHub's slug rule), every local
file it links exists, and every ``](page.md#anchor)`` names a heading of that page. A section lost in an
edit, or a page renamed, fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    ROOT / "ARCHITECTURE.md",
    ROOT / "models" / "README.md",
    ROOT / "data" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
IDS = [str(doc.relative_to(ROOT)) for doc in DOCS]
LINK = re.compile(r"\]\((?!https?:|mailto:)([^)\s]*)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    in_code, found = False, set()
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(_slug(m.group(1)))
    return found


def _links(doc: Path) -> list[tuple[str, str]]:
    """(file part, anchor part) of every local link outside code blocks; the file part is empty for ``#x``."""
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    return [(target.partition("#")[0], target.partition("#")[2]) for target in LINK.findall(text)]


def test_the_docs_folder_has_pages() -> None:
    assert len(DOCS) > 4, "docs/*.md found no page"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_anchor_link_names_a_heading(doc: Path) -> None:
    anchors = _anchors(doc.read_text(encoding="utf-8"))
    missing = sorted({anchor for path, anchor in _links(doc) if not path and anchor not in anchors})
    assert not missing, f"{doc.name} links to headings it does not have: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_local_file_link_exists(doc: Path) -> None:
    missing = sorted({path for path, _ in _links(doc) if path and not (doc.parent / path).exists()})
    assert not missing, f"{doc.name} links to files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_link_into_another_page_names_one_of_its_headings(doc: Path) -> None:
    missing = []
    for path, anchor in _links(doc):
        target = doc.parent / path
        known = (
            _anchors(target.read_text(encoding="utf-8"))
            if target.suffix == ".md" and target.exists()
            else None
        )
        if anchor and known is not None and anchor not in known:
            missing.append(f"{path}#{anchor}")
    assert not missing, f"{doc.name} links to headings other pages do not have: {sorted(missing)}"
