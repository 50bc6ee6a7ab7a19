"""Promotion propagation: seconds from a promotion's answer until every replica serves it, for the default
model and a named one, normally and 1 s after a PostgreSQL outage.

    python bench/promotion_propagation.py [--promotions 20] [--outages 3] [--outage-s 20] [--reload-s 2]

Starts a throwaway PostgreSQL (``tests/postgres.py``) and two API replicas (``python -m app``, separate
processes) over one registry holding ``default`` and ``aapl`` (copies of the fixture bundle under two
versions each), both models in memory on both replicas. Each promotion goes through one replica (in turn);
the clock stops when a forecast on every replica answers with the promoted version (polled every 10 ms).
After an outage (``pg_ctl stop``, wait, ``pg_ctl start`` on the same port and data), the promotion is sent
1 s after the database is back. Prints p50, p99 and max per case (few samples after outages: p99 is the max).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latency import percentiles  # noqa: E402

from closecast import registry  # noqa: E402
from tests.helpers import FIXTURE_BUNDLE, FIXTURE_VERSION, Server, copy_registry, running_server  # noqa: E402
from tests.postgres import start_cluster  # noqa: E402
from tests.synthetic import calm_walk  # noqa: E402

KEY = "bench-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
ANSWERED: list[float] = []  # seconds each promotion request took to be answered
VERSIONS = {
    "default": (FIXTURE_VERSION, "20991124T000000Z-second00"),
    "aapl": ("20991201T000000Z-aapl0001", "20991202T000000Z-aapl0002"),
}


def _registry(tmp: Path) -> Path:
    root = copy_registry(tmp / "models")
    shutil.copytree(FIXTURE_BUNDLE, root / "default" / VERSIONS["default"][1])
    for version in VERSIONS["aapl"]:
        shutil.copytree(FIXTURE_BUNDLE, root / "aapl" / version)
    registry.set_current(root / "aapl", VERSIONS["aapl"][0], "bench")
    return root


def _served(http: httpx.Client, server: Server, model: str) -> str | None:
    try:
        r = http.post(server.url + "/forecast", json={"closes": calm_walk(), "model": model})
    except httpx.TransportError:
        return None
    return str(r.json()["model_version"]) if r.status_code == 200 else None


def _propagate(http: httpx.Client, via: Server, replicas: list[Server], model: str) -> float:
    """Promote the version of ``model`` not served now through ``via``; seconds until all serve it."""
    now = _served(http, via, model)
    target = next(v for v in VERSIONS[model] if v != now)
    began = time.monotonic()
    answer = http.post(f"{via.url}/models/{model}/versions/{target}/promote", headers=AUTH)
    assert answer.status_code == 200, answer.text
    sent = time.monotonic()
    ANSWERED.append(sent - began)
    while any(_served(http, s, model) != target for s in replicas):
        if time.monotonic() - sent > 60:
            raise RuntimeError(f"{model} {target} did not reach every replica within 60 s")
        time.sleep(0.01)
    return time.monotonic() - sent


def _line(name: str, took: list[float]) -> str:
    p50, p99 = percentiles(took)
    return f"{name:<26} n={len(took):3d}  p50 {p50:5.2f} s  p99 {p99:5.2f} s  max {max(took):5.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--promotions", type=int, default=20, help="normal promotions per model (20)")
    parser.add_argument("--outages", type=int, default=3, help="database outages (3)")
    parser.add_argument("--outage-s", type=float, default=20.0, help="seconds each outage lasts (20)")
    parser.add_argument("--reload-s", type=float, default=2.0, help="CLOSECAST_RELOAD_INTERVAL_S (2)")
    args = parser.parse_args()
    cluster = start_cluster()
    if isinstance(cluster, str):
        sys.exit(f"error: {cluster}")
    settings = {
        "database_url": cluster.create_database(),
        "api_key": KEY,
        "reload_interval_s": str(args.reload_s),
        "job_store_timeout_s": "1",
        "run_jobs": "false",
    }
    results: dict[str, list[float]] = {}
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            running_server(_registry(Path(tmp)), **settings) as a,
            running_server(Path(tmp) / "models", **settings) as b,
            httpx.Client(timeout=60) as http,
        ):
            replicas = [a, b]
            for server in replicas:  # both models in memory on both replicas
                assert all(_served(http, server, model) for model in VERSIONS)
            for i in range(args.promotions):
                for model in VERSIONS:
                    took = _propagate(http, replicas[i % 2], replicas, model)
                    results.setdefault(f"{model}, normally", []).append(took)
            for i in range(args.outages):
                cluster.stop("fast")
                time.sleep(args.outage_s)
                cluster.start()
                time.sleep(1.0)
                for model in VERSIONS:
                    took = _propagate(http, replicas[i % 2], replicas, model)
                    results.setdefault(f"{model}, after an outage", []).append(took)
    finally:
        cluster.destroy()
    print(
        f"promotion -> every replica serving (2 replicas, reload interval {args.reload_s:g} s, "
        f"outages of {args.outage_s:g} s)"
    )
    for name, took in results.items():
        print(_line(name, took))
    print(_line("promote request answered", ANSWERED))


if __name__ == "__main__":
    main()
