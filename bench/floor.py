"""The floor under the router: what a bare Python proxy on ironrt's own HTTP parts adds,
next to what the router adds, in one run, against one zero-latency upstream.

    python bench/floor.py [--seconds 4]

Five paths, alternated call by call at concurrency 1 and phase by phase at 32:

- **direct**: the load generator to the upstream (bench/_upstream.py);
- **raw proxy**: the least a Python proxy on asyncio protocols can be (one upstream connection per
  client connection, httptools both ways, bytes relayed whole: two parses, two writes);
- **governed floor**: the raw proxy plus the per-call work governance cannot skip (token
  lookup, PII scan both ways, budget hold and settle, pricing, a journal append before the
  answer, SQLite behind it; bench/_governed_floor.py): a lower bound of governance in
  CPython, with none of the router's layers;
- **bare proxy**: `ironrt.wire`'s server and client pool in their own process, forwarding
  each request as it came (no auth, no parsing of the body, no policy, no record) and
  relaying the answer whole: the least any Python proxy built on these parts can add;
- **ironrt**: the router of a real daemon (TempDaemon), an agent's IC_TOKEN, default
  policies (PII detect, budget, the books journaled per call).

"router minus bare proxy" is what governance costs per call in the router; "governed
floor minus raw proxy" is what it costs at the least. Issue 14's c=1 goal (added p50 <=
0.35 ms) is compared with all of them.

The three proxies run on the event loop the daemon chooses (`ironrt.daemon.event_loop`:
uvloop where it imports), as the router does. Until 2026-12-01 they ran on plain asyncio,
whose loop is Python: that made the floors look 1.5-2x dearer than the router's own loop
would make them (that day, raw proxy at c=1 0.19 -> 0.12 ms added, governed floor 0.36 ->
0.25-0.28, bare proxy 0.45 -> 0.31-0.33).

At c=1 every path gets one call in five, so each process runs with caches the other four
have used: the router's CPU a call here (1.1-1.3 ms that day) is about twice what
bench/router.py reads (0.6-0.7 ms), where the daemon serves two calls in three. A call's
cost at c=1 on this machine is as much the memory it touches as the work it does.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, machine, start_token_agent, table, write_results
from _governed_floor import governed_proxy
from _loadgen import Target, alternate, build_request, saturate
from _proxy_parts import ClientSide, UpstreamSide, bare_app, run_on_daemon_loop, serve
from router import FAKE_KEY, chat_body, start_upstream, stop_proc

from ironrt.tempdaemon import TempDaemon

PATH = "/v1/chat/completions"


def _proxy(sock: socket.socket, upstream: str) -> None:
    """The bare proxy's process: forward, relay, nothing else."""
    from ironrt.server import make_server
    from ironrt.wire.pool import Pool

    pool = Pool(connect_timeout=5, read_timeout=30)
    app = bare_app(pool, upstream, FAKE_KEY)
    run_on_daemon_loop(make_server(app, unix=False).serve([sock]))


def _raw_proxy(sock: socket.socket, up_port: int) -> None:
    """The least a Python proxy on asyncio can be: per client connection one upstream
    connection, httptools on both sides, the request and the answer relayed as whole
    byte strings (two parses and two writes a call, nothing else: no ASGI, no pool)."""
    import httptools

    class Upstream(UpstreamSide):
        def __init__(self, client: asyncio.Transport) -> None:
            super().__init__()
            self.client = client
            self.parser = httptools.HttpResponseParser(self)
            self.buf: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.buf.append(data)
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.client.write(b"".join(self.buf))
            self.buf = []

    class Client(ClientSide):
        def __init__(self) -> None:
            super().__init__()
            self.parser = httptools.HttpRequestParser(self)
            self.buf: list[bytes] = []

        def upstream(self) -> UpstreamSide:
            return Upstream(self.transport)

        def data_received(self, data: bytes) -> None:
            self.buf.append(data)
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            data, self.buf = b"".join(self.buf), []
            self.forward(data)

    Client.up_port = up_port
    serve(sock, Client)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def run(seconds: float) -> dict[str, Any]:
    from ironrt.server import bind_tcp

    upstream, up_port = start_upstream()
    proxy: multiprocessing.process.BaseProcess | None = None
    raw: multiprocessing.process.BaseProcess | None = None
    governed: multiprocessing.process.BaseProcess | None = None
    workdir = Path(tempfile.mkdtemp(prefix="irt-bench-floor-"))
    try:
        sock = bind_tcp("127.0.0.1", 0)
        proxy_port = sock.getsockname()[1]
        ctx = multiprocessing.get_context("fork")
        proxy = ctx.Process(target=_proxy, args=(sock, f"http://127.0.0.1:{up_port}"))
        proxy.start()
        sock.close()
        _wait_port(proxy_port)
        sock = bind_tcp("127.0.0.1", 0)
        raw_port = sock.getsockname()[1]
        raw = ctx.Process(target=_raw_proxy, args=(sock, up_port))
        raw.start()
        sock.close()
        _wait_port(raw_port)
        sock = bind_tcp("127.0.0.1", 0)
        governed_port = sock.getsockname()[1]
        governed = ctx.Process(
            target=governed_proxy, args=(sock, up_port, {"floor-token": "floor"}, FAKE_KEY)
        )
        governed.start()
        sock.close()
        _wait_port(governed_port)
        env = {
            "IRONRT_OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}",
            "OPENAI_API_KEY": FAKE_KEY,
            "IRONRT_SAMPLE_INTERVAL": "1.0",
        }
        with TempDaemon(offline=False, env=env) as d:
            _, token = start_token_agent(d, workdir, "floor", budget=1_000_000.0)
            url = urlsplit(d.router_url)
            rport = int(url.port or 80)
            body = chat_body("Say hello in five words.")

            def target(name: str, port: int, auth: str) -> Target:
                req = build_request(
                    "127.0.0.1", port, PATH, body, {"authorization": f"Bearer {auth}"}
                )
                return Target(name, "127.0.0.1", port, req, req)

            targets = [
                target("direct", up_port, FAKE_KEY),
                target("raw_proxy", raw_port, FAKE_KEY),
                target("governed_floor", governed_port, "floor-token"),
                target("bare_proxy", proxy_port, "unused"),
                target("ironrt", rport, token),
            ]
            asyncio.run(alternate(targets, "plain", 300, time.monotonic() + 5))  # warm
            assert proxy.pid is not None and raw.pid is not None and d.proc is not None
            assert governed.pid is not None
            pids = {
                "raw_proxy": raw.pid,
                "governed_floor": governed.pid,
                "bare_proxy": proxy.pid,
                "ironrt": d.proc.pid,
            }
            cpu0 = {k: _cpu_s(p) for k, p in pids.items()}
            c1, done = asyncio.run(alternate(targets, "plain", 10**9, time.monotonic() + seconds))
            cpu1 = {k: _cpu_s(p) for k, p in pids.items()}
            out: dict[str, Any] = {"iterations": done}
            for t in targets:
                s = sorted(c1[t.name].total)
                assert not c1[t.name].errors, (t.name, c1[t.name].statuses)
                out[t.name] = {"c1_p50_ms": statistics.median(s) * 1e3}
                out[t.name]["c1_p99_ms"] = s[int(len(s) * 0.99)] * 1e3
                if t.name in pids:
                    used = cpu1[t.name] - cpu0[t.name]
                    out[t.name]["c1_cpu_ms_per_call"] = used / done * 1e3
            for t in targets:
                before = _cpu_s(pids[t.name]) if t.name in pids else 0.0
                samples, elapsed = asyncio.run(saturate(t, "plain", 32, seconds, 10**9))
                out[t.name]["c32_rps"] = len(samples.total) / elapsed
                if t.name in pids:
                    used = _cpu_s(pids[t.name]) - before
                    out[t.name]["c32_cpu_ms_per_call"] = used / max(len(samples.total), 1) * 1e3
    finally:
        for child in (proxy, raw, governed):
            if child is not None:
                child.terminate()
                child.join(5)
        stop_proc(upstream)
    direct = out["direct"]
    for name in ("raw_proxy", "governed_floor", "bare_proxy", "ironrt"):
        out[name]["added_p50_ms"] = out[name]["c1_p50_ms"] - direct["c1_p50_ms"]
        out[name]["added_p99_ms"] = out[name]["c1_p99_ms"] - direct["c1_p99_ms"]
    out["governance_added_p50_ms"] = out["ironrt"]["c1_p50_ms"] - out["bare_proxy"]["c1_p50_ms"]
    return out


def report(r: dict[str, Any]) -> None:
    rows = []
    for name in ("direct", "raw_proxy", "governed_floor", "bare_proxy", "ironrt"):
        x = r[name]
        rows.append(
            [
                name,
                fmt(x["c1_p50_ms"]),
                fmt(x.get("added_p50_ms", 0.0)),
                fmt(x.get("added_p99_ms", 0.0)),
                fmt(x.get("c1_cpu_ms_per_call", float("nan"))),
                fmt(x["c32_rps"], 0),
                fmt(x.get("c32_cpu_ms_per_call", float("nan"))),
            ]
        )
    print(
        table(
            f"the floor: bare proxies vs the router ({r['iterations']} calls each at c=1)",
            [
                "path",
                "c=1 p50 ms",
                "added p50",
                "added p99",
                "CPU ms/call c=1",
                "c=32 calls/s",
                "CPU ms/call c=32",
            ],
            rows,
        )
    )
    print(
        f"governance (router - bare proxy) at c=1 p50: {fmt(r['governance_added_p50_ms'])} ms; "
        f"goal for the whole router: added p50 <= 0.35 ms"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args(argv)
    results = {"machine": machine(), **run(args.seconds)}
    report(results)
    write_results("floor", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
