"""Where the router's wire layer costs more than bare protocol callbacks: its server side,
its client side, or the coroutine between them. Four forwarding proxies with nothing on
top (no auth, no body parsing, no policy, no record), in one run, against one upstream:

    python bench/wire_parts.py [--seconds 6] [--rounds 2]

- **raw**: bench/floor.py's raw proxy: protocol callbacks both ways, no coroutine at all;
- **raw server + task + lean client**: no ironrt code at all: protocol callbacks for the
  agent's side, each request a task awaiting a client of a dozen lines (one kept-alive
  connection per call in flight, a future per answer): the raw proxy plus a coroutine;
- **raw server + pool**: a protocol server that hands each request to a task awaiting
  `ironrt.wire.pool.Pool` (the router's upstream client);
- **wire server + lean client**: `ironrt.wire`'s server (a task per request, served as the
  router is: its direct interface, no ASGI messages) with
  the same lean client;
- **bare**: `ironrt.wire`'s server and pool (bench/floor.py's bare proxy).

c=1: the paths and `direct` in turn, call by call (each process runs with caches the
others used, as in floor.py); added p50 and the process's CPU a call. c=32: each path's
calls/s and CPU a call. All on the daemon's event loop (uvloop where it imports).

What it showed on 2026-12-01 (two runs of two rounds, c=1 added p50): raw +0.117-0.121 ms,
raw server + task + lean client +0.179-0.182, raw server + pool +0.241-0.266, wire server
+ lean client +0.250-0.271, bare +0.305-0.331. So at c=1 a coroutine on the path costs
~0.06 ms, `ironrt.wire`'s pool ~0.08 more than the lean client, its server ~0.09 more
than protocol callbacks and a task; at c=32 (CPU a call) 0.015, 0.02-0.03 and ~0.035.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, machine, table, write_results
from _loadgen import Target, alternate, build_request, saturate
from _proxy_parts import Forwarding, WholeMessages, run_on_daemon_loop
from floor import PATH, _cpu_s, _proxy, _raw_proxy, _wait_port
from router import FAKE_KEY, chat_body, start_upstream, stop_proc

NAME = "wire_parts"
_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
_TCP_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _RawServer(WholeMessages):
    """The agent's side as protocol callbacks: each whole request handed to a task
    running `forward(body)`, whose answer is written as it comes back."""

    forward: Callable[[bytes], Awaitable[bytes]]

    def connection_made(self, transport: Any) -> None:
        import httptools

        self.transport = transport
        transport.get_extra_info("socket").setsockopt(*_TCP_NODELAY)
        self.parser = httptools.HttpRequestParser(self)

    def message(self, body: bytes) -> None:
        asyncio.get_running_loop().create_task(self._answer(body))

    async def _answer(self, body: bytes) -> None:
        data = await self.forward(body)
        self.transport.write(_HEAD % len(data) + data)


def _serve_raw(sock: socket.socket, forward: Callable[[bytes], Awaitable[bytes]]) -> None:
    async def main() -> None:
        server_class = type("Server", (_RawServer,), {"forward": staticmethod(forward)})
        server = await asyncio.get_running_loop().create_server(server_class, sock=sock)
        await server.serve_forever()

    run_on_daemon_loop(main())


class _LeanUpstream(WholeMessages):
    """A kept-alive upstream connection answering one future per request."""

    def __init__(self) -> None:
        import httptools

        super().__init__()
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(*_TCP_NODELAY)

    def message(self, body: bytes) -> None:
        assert self.answer is not None
        self.answer.set_result(body)


_REQUEST = (
    b"POST " + PATH.encode() + b" HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json"
    b"\r\nauthorization: Bearer " + FAKE_KEY.encode() + b"\r\ncontent-length: %d\r\n\r\n"
)


def _lean_client(up_port: int) -> Callable[[bytes], Awaitable[bytes]]:
    """A dozen-line client: a kept-alive connection per call in flight, one future a call."""
    idle: list[_LeanUpstream] = []

    async def call(body: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        if idle:
            up = idle.pop()
        else:
            _, up = await loop.create_connection(_LeanUpstream, "127.0.0.1", up_port)
        up.answer = loop.create_future()
        up.transport.write(_REQUEST % len(body) + body)
        data = await up.answer
        idle.append(up)
        return data

    return call


def _raw_server_task(sock: socket.socket, up_port: int) -> None:
    """No ironrt code at all: protocol callbacks, a task, the lean client."""
    _serve_raw(sock, _lean_client(up_port))


def _raw_server_pool(sock: socket.socket, upstream: str) -> None:
    """Protocol callbacks for the agent's side; each request a task awaiting the pool."""
    from ironrt.wire.pool import Pool

    pool = Pool(connect_timeout=5, read_timeout=30)
    headers = {"content-type": "application/json", "authorization": f"Bearer {FAKE_KEY}"}

    async def forward(body: bytes) -> bytes:
        answer = await pool.request("POST", upstream + PATH, headers, body)
        return await answer.read()

    _serve_raw(sock, forward)


def _wire_server_lean_client(sock: socket.socket, up_port: int) -> None:
    """`ironrt.wire`'s server; upstream, the lean client."""
    from ironrt.server import make_server

    call = _lean_client(up_port)

    async def forward(path: bytes, body: bytes) -> tuple[int, bytes]:
        return 200, await call(body)

    run_on_daemon_loop(make_server(Forwarding(forward), unix=False).serve([sock]))


def run(seconds: float, rounds: int) -> dict[str, Any]:
    from ironrt.server import bind_tcp

    upstream, up_port = start_upstream()
    children: list[multiprocessing.process.BaseProcess] = []
    ctx = multiprocessing.get_context("fork")

    def start(target: Any, *args: Any) -> tuple[int, int]:
        sock = bind_tcp("127.0.0.1", 0)
        port = sock.getsockname()[1]
        child = ctx.Process(target=target, args=(sock, *args))
        child.start()
        sock.close()
        children.append(child)
        _wait_port(port)
        assert child.pid is not None
        return port, child.pid

    out: dict[str, Any] = {"rounds": []}
    try:
        url = f"http://127.0.0.1:{up_port}"
        paths = {
            "raw": start(_raw_proxy, up_port),
            "raw_server+task+lean_client": start(_raw_server_task, up_port),
            "raw_server+pool": start(_raw_server_pool, url),
            "wire_server+lean_client": start(_wire_server_lean_client, up_port),
            "bare": start(_proxy, url),
        }
        body = chat_body("Say hello in five words.")

        def target(name: str, port: int) -> Target:
            auth = {"authorization": f"Bearer {FAKE_KEY}"}
            req = build_request("127.0.0.1", port, PATH, body, auth)
            return Target(name, "127.0.0.1", port, req, req)

        targets = [target("direct", up_port)] + [target(n, p) for n, (p, _) in paths.items()]
        asyncio.run(alternate(targets, "plain", 300, time.monotonic() + 3))  # warm
        for _ in range(rounds):
            row: dict[str, Any] = {}
            cpu0 = {n: _cpu_s(pid) for n, (_, pid) in paths.items()}
            c1, done = asyncio.run(alternate(targets, "plain", 10**9, time.monotonic() + seconds))
            cpu1 = {n: _cpu_s(pid) for n, (_, pid) in paths.items()}
            direct = statistics.median(c1["direct"].total) * 1e3
            for name in paths:
                assert not c1[name].errors, (name, c1[name].statuses)
                p50 = statistics.median(c1[name].total) * 1e3
                row[name] = {
                    "c1_added_p50_ms": p50 - direct,
                    "c1_cpu_ms_per_call": (cpu1[name] - cpu0[name]) / done * 1e3,
                }
            for t in targets[1:]:
                pid = paths[t.name][1]
                before = _cpu_s(pid)
                samples, elapsed = asyncio.run(saturate(t, "plain", 32, seconds / 2, 10**9))
                calls = max(len(samples.total), 1)
                row[t.name]["c32_rps"] = len(samples.total) / elapsed
                row[t.name]["c32_cpu_ms_per_call"] = (_cpu_s(pid) - before) / calls * 1e3
            out["rounds"].append(row)
    finally:
        for child in children:
            child.terminate()
            child.join(5)
        stop_proc(upstream)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0, help="c=1 rotation per round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    results = {"machine": machine(), **run(args.seconds, args.rounds)}
    for i, row in enumerate(results["rounds"], 1):
        rows = [
            [
                name,
                fmt(x["c1_added_p50_ms"]),
                fmt(x["c1_cpu_ms_per_call"]),
                fmt(x["c32_rps"], 0),
                fmt(x["c32_cpu_ms_per_call"]),
            ]
            for name, x in row.items()
        ]
        print(
            table(
                f"round {i}: forwarding only, against the same upstream",
                ["path", "c=1 added p50 ms", "CPU ms/call c=1", "c=32 calls/s", "CPU ms/call c=32"],
                rows,
            )
        )
        print()
    print(f"results: {write_results(NAME, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
