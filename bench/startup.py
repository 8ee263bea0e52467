"""Start-up and memory benchmark: how soon a new daemon's router answers, and its RSS.

    python bench/startup.py            # 5 starts each way, 100 agents, ~30 s
    python bench/startup.py --quick    # 3 starts, 20 agents, ~10 s smoke run

Side by side in one run:

1. Baselines: `python -c pass` and `python -c "import ironrt"` (what every CLI command and
   client pays), and `python -c "import ironrt.daemon"` (the daemon's imports alone).
2. The daemon from spawn (`python -m ironrt.daemon`, the code path of `ironrt daemon
   start` and TempDaemon) until its router answers `GET /health` with 200, on a port chosen
   up front so nothing but the router is polled: median of N starts in a fresh home (the
   database is created and migrated) and of N restarts on the same home.
3. The daemon's RSS idle (0 agents) and with 100 tiny sleeping agents started through
   `Runtime.start_agent`, after the sampler has seen them; the log relay (a separate
   process) is reported apart.
4. The first call (with PII detection, through the offline provider) as soon as the
   daemon answers, and after the daemon's background loading (the price tables and PII
   checks, loaded in a worker thread right after the router answers: see `_warm_up` in
   ironrt/daemon.py), against the calls after it.

Targets (issue 14): start until the router answers <= 500 ms; RSS <= 60 MB with 100 agents.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from _common import (
    Deadline,
    as_installed,
    fmt,
    free_port,
    machine,
    median_run,
    ratio,
    rss_mb,
    start_token_agent,
    table,
    warm_bytecode,
    write_results,
)

from ironrt.tempdaemon import TempDaemon

NAME = "startup"
TARGET_START_MS = 500.0
TARGET_RSS_MB = 60.0
TINY_AGENT = "import time\ntime.sleep(600)\n"
PII_PROMPT = (
    "Write to jane.doe@example.com or call +1 415 555 0100 about card 4111 1111 1111 1111 "
    "and IBAN DE89 3704 0044 0532 0130 00."
)


#: Everything a daemon imports, also what it loads after the start and at a call.


def answers(port: int) -> bool:
    """GET /health on the router answers 200 (a refused connect is the usual 'not yet')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except OSError:
        return False
    finally:
        conn.close()


#: The environment of every measured process (`python_env`).
ENV: dict[str, str] = dict(os.environ)


def python_env(cache: Path | None) -> dict[str, str]:
    """The environment the measured processes run in. With `cache`, bytecode is written to
    and read from there (`PYTHONPYCACHEPREFIX`) even if PYTHONDONTWRITEBYTECODE is set (as
    in some sandboxes and CI): an installed package has its .pyc files (pip compiles them),
    so compiling every module at every start would measure something no user runs."""
    env = dict(os.environ)
    if cache is not None:
        env.update(as_installed(cache))
    return env


def daemon_env(home: Path, port: int) -> dict[str, str]:
    return {
        **ENV,
        "IRONRT_HOME": str(home),
        "IRONRT_ROUTER_PORT": str(port),
        "IRONRT_OFFLINE": "1",
        "IRONRT_NO_AUTOSTART": "1",
    }


def one_start(home: Path, port: int, timeout: float = 20.0) -> tuple[float, float]:
    """Seconds from spawn until the router answers, and the CPU seconds (user + system) the
    daemon had used by then: what the start costs whatever else loads the machine. The
    daemon is stopped again after."""
    err = open(home / "daemon.err", "ab")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ironrt.daemon"],
        env=daemon_env(home, port),
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )
    err.close()
    try:
        while not answers(port):
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {(home / 'daemon.err').read_text()[-800:]}")
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError("the router did not answer")
            time.sleep(0.002)
        took = time.perf_counter() - t0
        cpu = psutil.Process(proc.pid).cpu_times()
        return took, cpu.user + cpu.system
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def starts(runs: int) -> dict[str, Any]:
    """`runs` starts in fresh homes, then `runs` restarts of one home (after a warm-up)."""
    fresh: list[tuple[float, float]] = []
    again: list[tuple[float, float]] = []
    homes: list[Path] = []
    try:
        for i in range(runs + 1):
            home = Path(tempfile.mkdtemp(prefix="irt-st-", dir="/tmp"))
            homes.append(home)
            took = one_start(home, free_port())
            if i:  # the first one warms the page cache
                fresh.append(took)
        home = homes[-1]
        port = free_port()
        for _ in range(runs):
            again.append(one_start(home, port))
    finally:
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)
    out: dict[str, Any] = {}
    for name, runs_ in (("fresh", fresh), ("same", again)):
        out[f"{name}_ms"] = [t * 1000 for t, _ in runs_]
        out[f"{name}_cpu_ms"] = [c * 1000 for _, c in runs_]
        out[f"{name}_median_ms"] = statistics.median(t for t, _ in runs_) * 1000
        out[f"{name}_cpu_median_ms"] = statistics.median(c for _, c in runs_) * 1000
    return out


def relay_rss(d: TempDaemon) -> float:
    return sum(rss_mb(p.pid) for p in d._relays())


def pii_first_call(d: TempDaemon, workdir: Path, name: str) -> dict[str, float]:
    """Latency of the first call with PII detection, and the median of the next ones."""
    agent_id, token = start_token_agent(d, workdir, name, pii="detect", budget=100.0)
    port = int(d.router_url.rsplit(":", 1)[1])
    body = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PII_PROMPT}]}
    )
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    times: list[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(11):
            t0 = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            times.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise RuntimeError(f"PII call answered {resp.status}")
    finally:
        conn.close()
    d.rt.stop_agent(agent_id)
    return {
        "first_ms": times[0] * 1000,
        "next_median_ms": statistics.median(times[1:]) * 1000,
    }


def warmed_up(d: TempDaemon, timeout: float = 15.0) -> float:
    """Wait for the daemon's background loading after its start; how long it took (ms).
    nan if it never says (a daemon from before it did any)."""
    deadline = Deadline(timeout)
    while not deadline.passed():
        for line in d.log().splitlines():
            entry = json.loads(line)
            if entry.get("msg") == "price tables and PII checks loaded":
                return float(entry["took_ms"])
        time.sleep(0.05)
    return float("nan")


def memory(n: int, deadline: Deadline, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"truncated": False}
    script = workdir / "tiny.py"
    script.write_text(TINY_AGENT)
    # Production sampling pace, as bench/supervisor.py: the sampler's state is part of RSS.
    env = {"IRONRT_SAMPLE_INTERVAL": "1.0", "IRONRT_RESTART_BACKOFF": "0.5"}
    with TempDaemon(env={**ENV, **env}) as d:
        # An agent's first call as soon as the daemon answers: it may wait for what the
        # daemon loads in the background right after its start (the price tables, the
        # PII checks).
        out["pii_at_once"] = pii_first_call(d, workdir, "pii-at-once")
    with TempDaemon(env={**ENV, **env}) as d:
        assert d.proc is not None
        pid = d.proc.pid
        out["warm_up_ms"] = warmed_up(d)
        out["pii"] = pii_first_call(d, workdir, "pii-after")
        out["rss_idle_mb"] = rss_mb(pid)
        ids: list[str] = []
        t0 = time.perf_counter()
        for _ in range(n):
            if deadline.passed():
                out["truncated"] = True
                break
            ids.append(d.rt.start_agent(str(script), cwd=str(workdir), budget=1.0))
        out["start_wall_s"] = time.perf_counter() - t0
        out["n"] = len(ids)
        live = 0
        while not deadline.passed():
            live = sum(1 for a in d.rt.list_agents() if a.status.value == "running")
            if live >= len(ids):
                break
            time.sleep(0.05)
        out["running"] = live
        time.sleep(2.5)  # two sampler passes over every agent
        out["rss_loaded_mb"] = rss_mb(pid)
        out["relay_rss_mb"] = relay_rss(d)
    return out


def bare_python_rss() -> float:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"]) as p:
        time.sleep(0.3)
        try:
            return rss_mb(p.pid)
        finally:
            p.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 starts, 20 agents")
    parser.add_argument("--agents", type=int, default=None)
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="measure as the environment is (with PYTHONDONTWRITEBYTECODE, every module "
        "is compiled at every start)",
    )
    args = parser.parse_args()
    runs = 3 if args.quick else 5
    n = args.agents or (20 if args.quick else 100)
    workdir = Path(tempfile.mkdtemp(prefix="irt-bench-"))
    ENV.clear()
    ENV.update(python_env(None if args.no_bytecode_cache else workdir / "pycache"))
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "bytecode_cache": not ENV.get("PYTHONDONTWRITEBYTECODE"),
        "targets": {"start_ms": TARGET_START_MS, "rss_mb": TARGET_RSS_MB},
    }
    try:
        py = [sys.executable, "-c"]
        # Compile once what the daemon imports, at its start and after it (the price
        # tables' module is large: compiled in a measured daemon, it took its memory up by
        # ~10 MiB and its background loading 4x as long).
        warm_bytecode(sys.executable, ENV)
        results["python_c_pass"] = median_run([*py, "pass"], 7, env=ENV)
        results["import_ironrt"] = median_run([*py, "import ironrt"], 7, env=ENV)
        results["import_daemon"] = median_run([*py, "import ironrt.daemon"], 5, env=ENV)
        results["start"] = starts(runs)
        results["bare_python_rss_mb"] = bare_python_rss()
        results["memory"] = memory(n, Deadline(90), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    path = write_results(NAME, results)
    report(results)
    print(f"\nresults: {path}")
    return 0


def report(r: dict[str, Any]) -> None:
    base = r["python_c_pass"]["median"]
    s, m = r["start"], r["memory"]
    base_cpu = r["python_c_pass"]["cpu_median"]
    nan = float("nan")
    rows: list[list[Any]] = [
        ["python -c pass (baseline)", base, base_cpu],
        [
            "python -c 'import ironrt'",
            r["import_ironrt"]["median"],
            r["import_ironrt"]["cpu_median"],
        ],
        [
            "python -c 'import ironrt.daemon'",
            r["import_daemon"]["median"],
            r["import_daemon"]["cpu_median"],
        ],
        [
            "daemon spawn -> router answers, fresh home",
            s["fresh_median_ms"],
            s["fresh_cpu_median_ms"],
        ],
        ["daemon spawn -> router answers, same home", s["same_median_ms"], s["same_cpu_median_ms"]],
        ["background loading after the start", m["warm_up_ms"], nan],
        ["first call (PII detect) as soon as it answers", m["pii_at_once"]["first_ms"], nan],
        ["first call (PII detect) after the loading", m["pii"]["first_ms"], nan],
        ["next calls with PII detect (median)", m["pii"]["next_median_ms"], nan],
    ]
    rows = [[name, ms, ratio(ms, base), cpu, ratio(cpu, base_cpu)] for name, ms, cpu in rows]
    print(
        table(
            "Start-up (median; ratio to python -c pass; CPU = user + system)",
            ["", "wall ms", "x", "CPU ms", "x"],
            rows,
        )
    )
    bare = r["bare_python_rss_mb"]
    mem_rows = [
        ["bare python (baseline)", bare, 1.0],
        ["daemon idle, 0 agents", m["rss_idle_mb"], ratio(m["rss_idle_mb"], bare)],
        [f"daemon, {m['n']} agents", m["rss_loaded_mb"], ratio(m["rss_loaded_mb"], bare)],
        ["log relay process", m["relay_rss_mb"], ratio(m["relay_rss_mb"], bare)],
    ]
    print()
    print(table("RSS (MiB)", ["", "MiB", "x"], mem_rows))
    start_ok = s["fresh_median_ms"] <= TARGET_START_MS
    rss_ok = m["rss_loaded_mb"] <= TARGET_RSS_MB
    print()
    print(
        f"start {fmt(s['fresh_median_ms'])} ms (target <= {TARGET_START_MS:.0f}): "
        f"{'PASS' if start_ok else 'FAIL'}"
    )
    print(
        f"RSS {fmt(m['rss_loaded_mb'])} MiB with {m['n']} agents "
        f"({m['running']} running; target <= {TARGET_RSS_MB:.0f}): "
        f"{'PASS' if rss_ok else 'FAIL'}"
    )


if __name__ == "__main__":
    sys.exit(main())
