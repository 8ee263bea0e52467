"""How far the router's throughput at concurrency 32 goes with its work in more than one
process, measured by wrk (a load generator in C) on this machine's two cores.

    python bench/processes.py [--seconds 6] [--rounds 2]   # needs wrk (apt-get install wrk)

Issue 14 asks for 3,000 calls/s at c=32 with the router, the load generator and the
upstream on two cores. The daemon's router is one process, and its CPU a call (~0.5 ms)
caps it at one core's worth, ~1,500-2,000 calls/s here, whatever the load generator. This
bench measures what the same router code serves in one process and in two (each a
`RouterService` with the bench agents of bench/governance.py, its own ledger and books,
on one port shared with SO_REUSEPORT), next to the daemon itself and the upstream alone,
all loaded by wrk: a C load generator whose CPU a call is a small fraction of
bench/_loadgen.py's (0.06-0.2 ms), so the two cores are left to the router and the
upstream.

The two-process figure is an upper bound for a router in two processes: the processes
share no budget (each has its own ledger), where the daemon must keep one exact budget
across them (a ledger in one process the others ask, or in shared memory): that cost is
not in it. It is the measurement behind the design question of issue 14's notes, not a
configuration ironrt runs.

Phases alternate (direct, daemon, one process, two processes), `--rounds` times; each
reports wrk's calls/s, its p50 and p99, and the CPU a call of the processes serving it
(psutil, user + system). Every answer must be a 200.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Deadline,
    cpu_s,
    fmt,
    free_port,
    machine,
    start_token_agent,
    table,
    write_results,
)
from router import FAKE_KEY, start_upstream, stop_proc

from ironrt.tempdaemon import TempDaemon

BENCH_DIR = Path(__file__).resolve().parent
BODY = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in five words."}]}'
WORKER_TOKEN = "tok-detect"  # bench/governance.py's agent with PII detect (the default)
CONCURRENCY = 32
#: Every agent's budget (USD): never reached, so each call is admitted and settled in it.
BUDGET_USD = 1000


def _worker(port: int, upstream_url: str) -> None:
    """One router process: the daemon's `RouterService` on `port` (SO_REUSEPORT)."""
    import uvloop
    from governance import bench_router

    from ironrt.wire.server import Server

    async def main() -> None:
        home = Path(tempfile.mkdtemp(prefix="irt-proc-", dir="/tmp"))
        # Budgets, as the daemon's agent below has.
        service, _db = await bench_router(home, upstream_url, BUDGET_USD)
        server = Server(service.app)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1024)
        sock.setblocking(False)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(service.run())
            tg.create_task(server.serve([sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            print("READY", flush=True)

    uvloop.run(main())


def start_workers(n: int, port: int, upstream_url: str) -> list[subprocess.Popen[str]]:
    procs = []
    for _ in range(n):
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(port), upstream_url],
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    deadline = Deadline(30)
    for proc in procs:
        assert proc.stdout is not None
        while proc.stdout.readline().strip() != "READY":
            if proc.poll() is not None or deadline.passed():
                for p in procs:
                    stop_proc(p)
                raise RuntimeError("a router process did not start")
    return procs


_SCRIPT = """wrk.method = "POST"
wrk.body = {body!r}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
"""


def wrk(port: int, token: str, seconds: float, script_dir: Path) -> dict[str, float]:
    """wrk at c=32 for `seconds` against the chat path: calls/s, p50, p99 (ms), non-2xx."""
    script = script_dir / f"{token}.lua"
    script.write_text(_SCRIPT.format(body=BODY, token=token))
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONCURRENCY}",
            f"-d{seconds:g}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if rate is None or total is None:
        raise RuntimeError(f"wrk said:\n{out}")
    return {
        "calls_per_s": float(rate.group(1)),
        "calls": float(total.group(1)),
        "p50_ms": _latency(out, "50%"),
        "p99_ms": _latency(out, "99%"),
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": float(sum(int(x) for x in errors.groups())) if errors else 0.0,
    }


def _latency(out: str, which: str) -> float:
    found = re.search(rf"^\s*{re.escape(which)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if found is None:
        return float("nan")
    value, unit = float(found.group(1)), found.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_s(pid) for pid in pids)


def run(seconds: float, rounds: int) -> dict[str, Any]:
    upstream, up_port = start_upstream()
    up_url = f"http://127.0.0.1:{up_port}"
    one_port, two_port = free_port(), free_port()
    procs: list[subprocess.Popen[str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="irt-procs-"))
    try:
        with TempDaemon(
            env={"IRONRT_OPENAI_BASE_URL": up_url, "OPENAI_API_KEY": FAKE_KEY},
            offline=False,
        ) as d:
            _, token = start_token_agent(d, workdir, "procs", budget=float(BUDGET_USD))
            daemon_port = int(d.router_url.rsplit(":", 1)[1])
            assert d.proc is not None
            one = start_workers(1, one_port, up_url)
            two = start_workers(2, two_port, up_url)
            procs = one + two
            phases = {
                "direct": (up_port, "none", [upstream.pid]),
                "daemon": (daemon_port, token, [d.proc.pid]),
                "one process": (one_port, WORKER_TOKEN, [p.pid for p in one]),
                "two processes": (two_port, WORKER_TOKEN, [p.pid for p in two]),
            }
            # Warm every path (bytecode, pools, caches) before anything is measured.
            for port, tok, _ in phases.values():
                wrk(port, tok, 1, workdir)
            results: dict[str, list[dict[str, float]]] = {k: [] for k in phases}
            for _ in range(rounds):
                for name, (port, tok, pids) in phases.items():
                    up_before, before = cpu_of([upstream.pid]), cpu_of(pids)
                    got = wrk(port, tok, seconds, workdir)
                    served = max(got["calls"], 1.0)
                    got["cpu_ms_per_call"] = (cpu_of(pids) - before) * 1000 / served
                    got["upstream_cpu_ms_per_call"] = (
                        (cpu_of([upstream.pid]) - up_before) * 1000 / served
                    )
                    results[name].append(got)
    finally:
        for proc in procs:
            stop_proc(proc)
        stop_proc(upstream)
        shutil.rmtree(workdir, ignore_errors=True)
    return {"machine": machine(), "seconds": seconds, "rounds": rounds, "phases": results}


def report(r: dict[str, Any]) -> None:
    phases: dict[str, list[dict[str, float]]] = r["phases"]
    rows = []
    for name, runs in phases.items():
        rates = [x["calls_per_s"] for x in runs]
        rows.append(
            [
                name,
                " / ".join(f"{v:,.0f}" for v in rates),
                " / ".join(fmt(x["p50_ms"]) for x in runs),
                " / ".join(fmt(x["p99_ms"]) for x in runs),
                " / ".join(fmt(x["cpu_ms_per_call"]) for x in runs),
                " / ".join(fmt(x["upstream_cpu_ms_per_call"]) for x in runs),
                sum(x["non_2xx"] + x["socket_errors"] for x in runs),
            ]
        )
    print(
        table(
            f"Chat at c={CONCURRENCY}, wrk, {r['seconds']:g} s phases, one column a round",
            ["path", "calls/s", "p50 ms", "p99 ms", "CPU ms a call", "upstream CPU", "errors"],
            rows,
        )
    )

    def best(name: str) -> float:
        return max(x["calls_per_s"] for x in phases[name])

    print(
        f"two processes / one: {best('two processes') / best('one process'):.2f}x; "
        f"one process / daemon: {best('one process') / best('daemon'):.2f}x; "
        f"best two-process figure against the 3,000 calls/s goal: {best('two processes'):,.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(int(args.worker[0]), args.worker[1])
        return 0
    if not 1 <= args.seconds <= 60 or not 1 <= args.rounds <= 10:
        ap.error("--seconds must be 1-60 and --rounds 1-10")
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk): nothing measured")
        return 2
    os.environ.setdefault("PYTHONHASHSEED", "0")
    start = time.monotonic()
    r = run(args.seconds, args.rounds)
    r["took_s"] = time.monotonic() - start
    report(r)
    print(f"JSON: {write_results('processes', r)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
