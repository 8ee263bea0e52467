"""Micro-benchmark of the router's upstream client alone: `ironrt.wire.pool.Pool` vs
aiohttp (what it replaced), against the same fast local upstream (bench/_upstream.py, its
own process), at concurrency 1 and 32.

    python bench/http_client.py [--seconds 3]

For each client and concurrency: p50 latency, requests/s, and this process's CPU per
call (process_time: the client's own cost, the upstream runs elsewhere). Phases alternate
(new, old, new, old) and the better of two is kept, so a noisy neighbour hurts both alike.
aiohttp is only imported here, for the comparison; the daemon no longer imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in five words."}]}'
HEADERS = {
    "authorization": "Bearer sk-bench",
    "content-type": "application/json",
    "accept": "application/json",
    "accept-encoding": "identity",
}

Call = Callable[[], Awaitable[int]]


def start_upstream() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "_upstream.py")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"upstream did not start: {line!r}")
    return proc, int(line.split()[1])


async def ours(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    from ironrt.wire.pool import Pool

    pool = Pool(connect_timeout=5, read_timeout=60)

    async def call() -> int:
        resp = await pool.request("POST", url, HEADERS, BODY)
        data = await resp.read()
        return len(data)

    return call, pool.aclose


async def theirs(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    import aiohttp  # the client it replaced, as the router configured it
    import yarl

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=512, limit_per_host=0, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
        trust_env=False,
        auto_decompress=True,
        skip_auto_headers=("User-Agent", "Content-Type"),
    )
    target = yarl.URL(url, encoded=True)

    async def call() -> int:
        async with session.request(
            "POST", target, headers=HEADERS, data=BODY, allow_redirects=False
        ) as resp:
            return len(await resp.read())

    return call, session.close


async def phase(call: Call, concurrency: int, seconds: float) -> dict[str, float]:
    for _ in range(50):  # warm: connections open, caches hot
        await call()
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    cpu0, t0 = time.process_time(), time.perf_counter()

    async def worker() -> None:
        while time.perf_counter() < stop:
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    n = len(latencies)
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "rps": n / wall,
        "cpu_ms": cpu / n * 1000,
    }


async def run(port: int, seconds: float) -> list[tuple[int, str, dict[str, float]]]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    clients: dict[str, tuple[Call, Callable[[], Awaitable[None]]]] = {
        "ironrt.wire": await ours(url),
        "aiohttp": await theirs(url),
    }
    rows: list[tuple[int, str, dict[str, float]]] = []
    for concurrency in (1, 32):
        best: dict[str, dict[str, float]] = {}
        for _ in range(2):
            for name, (call, _) in clients.items():
                got = await phase(call, concurrency, seconds)
                if name not in best or got["rps"] > best[name]["rps"]:
                    best[name] = got
        rows += [(concurrency, name, best[name]) for name in clients]
    for _, close in clients.values():
        await close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    proc, port = start_upstream()
    try:
        rows = asyncio.run(run(port, args.seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"{'c':>3}  {'client':<12} {'p50 ms':>8} {'req/s':>9} {'CPU ms/call':>12}")
    by: dict[tuple[int, str], dict[str, Any]] = {}
    for c, name, r in rows:
        by[(c, name)] = r
        print(f"{c:>3}  {name:<12} {r['p50_ms']:>8.3f} {r['rps']:>9,.0f} {r['cpu_ms']:>12.3f}")
    print("\nratio ironrt.wire / aiohttp (lower is better for p50 and CPU, higher for req/s)")
    for c in (1, 32):
        new, old = by[(c, "ironrt.wire")], by[(c, "aiohttp")]
        print(
            f"c={c:<3} p50 {new['p50_ms'] / old['p50_ms']:.2f}  req/s {new['rps'] / old['rps']:.2f}"
            f"  CPU/call {new['cpu_ms'] / old['cpu_ms']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
