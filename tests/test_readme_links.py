"""The README's own links land somewhere: every ``](#anchor)`` names a heading (GitHub's slug rule), and every
local file it links exists. A section lost in a merge (it happened to "Named models") fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "models" / "README.md"]


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


def test_every_anchor_link_names_a_heading() -> None:
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        missing = sorted(set(re.findall(r"\]\(#([^)]+)\)", text)) - _anchors(text))
        assert not missing, f"{doc.name} links to headings it does not have: {missing}"


def test_every_local_file_link_exists() -> None:
    for doc in DOCS:
        links = re.findall(r"\]\((?!https?:|#|mailto:)([^)#\s]+)", doc.read_text(encoding="utf-8"))
        missing = sorted(link for link in set(links) if not (doc.parent / link).exists())
        assert not missing, f"{doc.name} links to files that do not exist: {missing}"
