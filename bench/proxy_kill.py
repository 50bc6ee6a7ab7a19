"""Forecasts through nginx while one of two replicas is SIGKILLed: failures with and without `non_idempotent`.

    python bench/proxy_kill.py [--rounds 2] [--seconds 6] [--kill-at 2] [--threads 4]

Each round starts two replicas (``python -m app``, each over a copy of the fixture registry) and a real nginx
(Debian's ``nginx-light``) from ``deploy/nginx.conf``, as committed ("with") or with every ``non_idempotent``
removed ("without", what nginx does for a POST by default), drives ``POST /forecast`` from ``--threads``
keep-alive clients for ``--seconds``, and SIGKILLs one replica at ``--kill-at``. It prints the requests, the
failed ones (any answer but 200, or a transport error: "cut off mid-answer" is a replica killed after
nginx had passed its answer's head on, none since the server writes head and body at once; kept to show a
regression) and the ones nginx moved to the survivor, from its access log. The modes alternate (with,
without, with, without, ...) so a busy machine hurts both alike.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import SYNTHETIC_CSV  # noqa: E402
from tests.nginx import Load, missing_reason, running_nginx, running_replicas  # noqa: E402

BODY = {"closes": [float(r["Close"]) for r in csv.DictReader(SYNTHETIC_CSV.read_text().splitlines())][-30:]}
MODES = {"with": None, "without": lambda conf: conf.replace(" non_idempotent", "")}


def _round(mode: str, seconds: float, kill_at: float, threads: int) -> str:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        a, b = stack.enter_context(running_replicas(Path(tmp)))
        upstreams = [s.url.removeprefix("http://") for s in (a, b)]
        nginx = stack.enter_context(running_nginx(upstreams, MODES[mode]))
        with Load(nginx.url, "/forecast", BODY, threads).running() as load:
            time.sleep(kill_at)
            b.proc.kill()
            time.sleep(seconds - kill_at)
        log = nginx.access(len(load.statuses))
    moved = sum(1 for line in log if len(line.upstreams) > 1 and line.status == 200)
    codes = Counter(load.statuses)
    failed = sum(n for code, n in codes.items() if code != 200) + len(load.errors)
    cut_off = sum(1 for e in load.errors if "complete message body (received 0 bytes" in e)
    how = {**{str(code): n for code, n in codes.items() if code != 200}, "cut off mid-answer": cut_off}
    how["other transport errors"] = len(load.errors) - cut_off
    requests = len(load.statuses) + len(load.errors)
    return (
        f"{mode:<8} non_idempotent  requests {requests:6d}  failed {failed:3d} {how}"
        f"  moved to the survivor {moved}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each mode (default 2)")
    parser.add_argument("--seconds", type=float, default=6.0, help="load per round (default 6)")
    parser.add_argument("--kill-at", type=float, default=2.0, help="SIGKILL a replica after this (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    args = parser.parse_args()
    if reason := missing_reason():
        sys.exit(f"proxy_kill: {reason}")
    if not 0 < args.kill_at < args.seconds:
        sys.exit(f"proxy_kill: --kill-at is {args.kill_at}; it must be inside --seconds ({args.seconds})")
    print(f"{args.threads} clients, {args.seconds:g} s a round, a replica SIGKILLed at {args.kill_at:g} s")
    for _ in range(args.rounds):
        for mode in MODES:
            print(_round(mode, args.seconds, args.kill_at, args.threads), flush=True)


if __name__ == "__main__":
    main()
