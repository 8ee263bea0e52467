"""The HTTP server alone: uvicorn (httptools, as the daemon configured it before issue 14)
against ironrt's own `ironrt.wire.server`, serving the same tiny ASGI app.

Each server runs in its own process (as in the daemon); the load generator
(`bench/_loadgen.py`, raw asyncio + httptools, keep-alive) drives it at concurrency 1
(latency: p50/p99 of a whole call) and at concurrency 32 (calls per second). Nothing else
of ironrt is on the path, so the numbers hold still while the router and the upstream
client change around them.

    python bench/http_server.py [--seconds 3] [--json]

The uvicorn baseline is uvicorn's httptools protocol without ironrt's connection guard
(its timers cost a few microseconds a call); the wire server runs with its guard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._loadgen import Target, alternate, build_request, saturate

BODY = b'{"id":"x","object":"chat.completion","choices":[],"usage":{"total_tokens":3}}'
REQUEST = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the body, answers a fixed JSON: what a router answer looks like on the wire."""
    while (await receive()).get("more_body", False):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def _serve(kind: str, sock: socket.socket) -> None:
    if kind == "uvicorn":
        import uvicorn

        config = uvicorn.Config(
            app,
            http="httptools",
            loop="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,
            backlog=2048,
        )
        asyncio.run(uvicorn.Server(config).serve([sock]))
    else:
        from ironrt.server import make_server

        asyncio.run(make_server(app, unix=False).serve([sock]))


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, seconds: float) -> dict[str, float]:
    from ironrt.server import bind_tcp

    sock = bind_tcp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    proc = multiprocessing.get_context("fork").Process(target=_serve, args=(kind, sock))
    proc.start()
    sock.close()
    assert proc.pid is not None
    try:
        target = Target(
            kind, "127.0.0.1", port, build_request("127.0.0.1", port, "/v1/x", REQUEST, {}), b""
        )
        deadline = time.monotonic() + 10
        while True:  # until it answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{kind} did not start"
                time.sleep(0.02)
        asyncio.run(alternate([target], "plain", 500, time.monotonic() + 5))  # warm-up
        cpu0 = _cpu_s(proc.pid)
        out, _done = asyncio.run(alternate([target], "plain", 10**9, time.monotonic() + seconds))
        c1 = sorted(out[kind].total)
        cpu1 = _cpu_s(proc.pid)
        samples, elapsed = asyncio.run(saturate(target, "plain", 32, seconds, 10**9))
        cpu2 = _cpu_s(proc.pid)
        assert not out[kind].errors and not samples.errors, (out[kind].statuses, samples.statuses)
        return {
            "c1_p50_us": statistics.median(c1) * 1e6,
            "c1_p99_us": c1[int(len(c1) * 0.99)] * 1e6,
            "c1_cpu_us_per_call": (cpu1 - cpu0) / len(c1) * 1e6,
            "c32_rps": len(samples.total) / elapsed,
            "c32_cpu_us_per_call": (cpu2 - cpu1) / max(1, len(samples.total)) * 1e6,
        }
    finally:
        proc.terminate()
        proc.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {kind: measure(kind, args.seconds) for kind in ("uvicorn", "wire")}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    keys = list(results["uvicorn"])
    print(f"{'':22}{'uvicorn':>12}{'wire':>12}{'wire/uvicorn':>14}")
    for key in keys:
        old, new = results["uvicorn"][key], results["wire"][key]
        print(f"{key:22}{old:12.1f}{new:12.1f}{new / old:14.2f}")


if __name__ == "__main__":
    main()
