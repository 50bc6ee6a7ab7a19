"""wrk, driven the same way by every HTTP bench: one Lua script that POSTs a body file and prints one
``BENCH {...}`` JSON line at the end, and the parser of that line (req/s, p50/p99/max in ms, errors)."""

from __future__ import annotations

import json
from pathlib import Path

LUA = """
wrk.method = "POST"
%(headers)s
local f = assert(io.open("%(body)s", "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d, " ..
    "\\"max_us\\": %%d, \\"socket_errors\\": %%d, \\"non_2xx\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def write_script(script: Path, body: Path, headers: dict[str, str] | None = None) -> Path:
    """The Lua script at ``script`` that POSTs the bytes of ``body`` with ``headers`` (default: a JSON
    content type)."""
    sent = headers if headers is not None else {"Content-Type": "application/json"}
    lines = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in sent.items())
    script.write_text(LUA % {"body": body, "headers": lines})
    return script


def summary(stdout: str) -> dict[str, float]:
    """wrk's output -> ``requests``, ``req_s``, ``p50_ms``, ``p99_ms``, ``max_ms`` and ``errors`` (socket
    errors plus non-2xx answers)."""
    r = json.loads(next(x for x in stdout.splitlines() if x.startswith("BENCH ")).removeprefix("BENCH "))
    return {
        "requests": r["requests"],
        "req_s": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "max_ms": r["max_us"] / 1e3,
        "errors": r["socket_errors"] + r["non_2xx"],
    }
