"""Instructions a call costs, counted by callgrind: the one figure of the router's CPU that
this shared machine's noise does not move (wall and CPU times drift by +-50 % between
runs; an instruction count repeats to a tenth of a percent).

    python bench/instructions.py [--calls 1000]      # needs valgrind (apt-get install valgrind)

The whole path of a call runs in ONE process under callgrind: a client writing a chat
request on a kept-alive socket -> `ironrt.wire`'s server -> the path under test ->
`ironrt.wire`'s client pool -> bench/_upstream.py's canned upstream, all on one uvloop
event loop, over real loopback sockets. Each path is run twice, with 0 and with `--calls`
calls after the same 200-call warm-up, and the difference divided by `--calls`: what one
call costs, start-up and warm-up taken out. Four paths, each against the same upstream:

- **bare**: bench/floor.py's bare proxy app on the wire (forward, relay, nothing else):
  the baseline, what the HTTP parts alone cost;
- **router_detect**: the daemon's `RouterService` (policies, ledger, books journaled per
  call), an agent with PII detect (the default);
- **router_off**: the same, PII off;
- **router_sdk**: router_detect with the headers the OpenAI SDK sends (18 in all; the other
  paths send 5): what the per-header work costs a real agent's call;
- **router_stream**: router_detect asking for a stream (`stream_options.include_usage`):
  the upstream's 18 events (one write each), relayed event by event.

The books' commit behind the answers is held to the end of the run (`COMMIT_EVERY_S`):
under callgrind a call takes ~50x its time, so the 25 ms group window would commit every
call alone, which the daemon never does; the final commit's cost is in the count,
spread over the calls. The client's and the upstream's own instructions are in every
path alike; the differences between paths are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, write_results
from _proxy_parts import bare_app

WARM = 200
PATHS = ("bare", "router_detect", "router_off", "router_sdk", "router_stream")
TOKENS = {
    "router_detect": "tok-detect",
    "router_off": "tok-off",
    "router_sdk": "tok-detect",
    "router_stream": "tok-detect",
}
#: The headers the OpenAI SDK (3.57.0, sync client) sends with a chat completion, besides
#: host, authorization and content-length (captured from a real call): the other paths
#: send two, so this one shows what the router's per-header work costs an SDK's call.
SDK_HEADERS = (
    b"Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\naccept: application/json\r\n"
    b"content-type: application/json\r\nuser-agent: OpenAI/Python 3.57.0\r\n"
    b"x-stainless-lang: python\r\nx-stainless-package-version: 3.57.0\r\n"
    b"x-stainless-os: Linux\r\nx-stainless-arch: x64\r\nx-stainless-runtime: CPython\r\n"
    b"x-stainless-runtime-version: 3.11.7\r\nx-stainless-async: false\r\n"
    b"x-stainless-retry-count: 0\r\nx-stainless-read-timeout: 600\r\n"
)


class _Client(asyncio.Protocol):
    """A kept-alive connection that writes a request and waits for its whole answer."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = b""
        self.want: int | None = None
        self.chunked = False
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.want is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            self.chunked = b"transfer-encoding: chunked" in head
            if self.chunked:  # a stream: its body ends with the last chunk
                self.want = end + 4
            else:
                length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                self.want = end + 4 + length
        if self.chunked and not self.buf.endswith(b"0\r\n\r\n"):
            return
        if len(self.buf) >= self.want and self.done is not None:
            if not self.buf.startswith(b"HTTP/1.1 200"):
                self.done.set_exception(AssertionError(self.buf[:300]))
            else:
                self.done.set_result(None)
            self.buf, self.want = b"", None

    async def call(self, request: bytes) -> None:
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        await self.done


async def _child(path: str, calls: int) -> None:
    """One run of `path` (in the process callgrind counts)."""
    import _upstream
    import governance as g

    import ironrt.store.books as books_module
    from ironrt.server import bind_tcp
    from ironrt.wire.pool import Pool
    from ironrt.wire.server import Server

    books_module.COMMIT_EVERY_S = 3600.0  # see the module docstring
    loop = asyncio.get_running_loop()
    canned = _upstream._App()

    class Handler(_upstream._Handler):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport  # a uvloop transport is no asyncio.Transport

    upstream = await loop.create_server(lambda: Handler(canned), "127.0.0.1", 0)
    up_url = f"http://127.0.0.1:{upstream.sockets[0].getsockname()[1]}"
    service: Any = None
    db: Any = None
    runner: asyncio.Task[None] | None = None
    if path == "bare":
        app: Any = bare_app(Pool(connect_timeout=5, read_timeout=30), up_url, "sk-x")
    else:
        home = Path(tempfile.mkdtemp(prefix="irt-instr-", dir="/tmp"))
        service, db = await g.bench_router(home, up_url)
        runner = asyncio.create_task(service.run())
        app = service.app
    server = Server(app)
    sock = bind_tcp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    serving = asyncio.create_task(server.serve([sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    token = TOKENS.get(path, "unused").encode()
    body = g.BODY
    if path == "router_stream":
        wanted = {**json.loads(body), "stream": True, "stream_options": {"include_usage": True}}
        body = json.dumps(wanted).encode()
    plain = b"content-type: application/json\r\naccept: application/json\r\n"
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        + (SDK_HEADERS if path == "router_sdk" else plain)
        + b"authorization: Bearer "
        + token
        + b"\r\ncontent-length: %d\r\n\r\n" % len(body)
        + body
    )
    _, client = await loop.create_connection(_Client, "127.0.0.1", port)
    for _ in range(WARM):
        await client.call(request)
    gc.collect()
    gc.freeze()  # as the daemon does after its first call (daemon_heap.py)
    for _ in range(calls):
        await client.call(request)
    if service is not None:
        await service.drain()
    client.transport.close()
    server.should_exit = True
    await serving
    if runner is not None:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await service.aclose()
        await db.close()
    upstream.close()
    # Every call went through to the upstream (not answered offline, not refused).
    assert canned.requests == WARM + calls, (canned.requests, WARM + calls)


def _count(path: str, calls: int) -> int:
    """Instructions callgrind counted for one run of `path` with `calls` calls."""
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        path,
        "--calls",
        str(calls),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"{path}: callgrind run failed:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def run(calls: int) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(), "calls": calls, "paths": {}}
    for path in PATHS:
        per_call = (_count(path, calls) - _count(path, 0)) / calls
        result["paths"][path] = {"instructions_per_call": per_call}
        print(f"{path}: {per_call / 1000:,.1f}k instructions a call", flush=True)
    bare = result["paths"]["bare"]["instructions_per_call"]
    for path in PATHS:
        result["paths"][path]["x_bare"] = result["paths"][path]["instructions_per_call"] / bare
    return result


def report(r: dict[str, Any]) -> None:
    bare = r["paths"]["bare"]["instructions_per_call"]
    rows = [
        [
            path,
            f"{v['instructions_per_call'] / 1000:,.1f}k",
            f"{(v['instructions_per_call'] - bare) / 1000:,.1f}k",
            f"{v['x_bare']:.2f}",
        ]
        for path, v in r["paths"].items()
    ]
    print(
        table(
            f"Instructions a call, whole path in one process (callgrind, {r['calls']} calls)",
            ["path", "a call", "over bare", "x bare"],
            rows,
        )
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 1 <= args.calls <= 100_000 and args.child is None:
        ap.error("--calls must be between 1 and 100000")
    if args.child is not None:
        import uvloop

        uvloop.run(_child(args.child, args.calls))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): nothing measured")
        return 2
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the same dict layouts in every run
    r = run(args.calls)
    report(r)
    print(f"JSON: {write_results('instructions', r)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
