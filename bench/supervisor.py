"""Supervisor benchmark: 100 trivial agents through the client vs plain subprocess.Popen.

    python bench/supervisor.py            # 100 agents per kind, ~1 minute
    python bench/supervisor.py --quick    # 20 agents per kind, ~20 s smoke run

For each kind of trivial agent (`sleep 60`, and a tiny Python script sleeping 60 s):

1. Floor: start N copies of the same command with subprocess.Popen (own session, output to
   a log file, as the daemon does), then SIGTERM + wait each one.
2. ironrt: a real daemon in a temporary IRONRT_HOME (TempDaemon, production sampling
   interval); start N agents through `Runtime.start_agent`, list them, fetch the metrics of
   each, time `ironrt ps` / `ironrt ps --json` end to end with N agents live, then stop each
   through `Runtime.stop_agent`. The daemon's RSS is read before, at N agents, and after.

Also the CLI's own start-up (`ironrt --help`) vs `python -c pass`, measured in the same run.
Targets (DESIGN.md, issue): `ironrt ps` with 100 agents < 150 ms end to end; start+stop
overhead per agent within 3x of the Popen floor; daemon RSS < 60 MB with 100 agents.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Deadline,
    as_installed,
    machine,
    median_run,
    ratio,
    rss_mb,
    summary,
    table,
    warm_bytecode,
    write_results,
)

from ironrt.tempdaemon import TempDaemon

NAME = "supervisor"
TARGET_PS_MS = 150.0
TARGET_START_STOP_RATIO = 3.0
TARGET_RSS_MB = 60.0
#: Production defaults, not TempDaemon's test-speed ones: the sampler runs at its real pace.
DAEMON_ENV = {"IRONRT_SAMPLE_INTERVAL": "1.0", "IRONRT_RESTART_BACKOFF": "0.5"}
TINY_AGENT = "import time\ntime.sleep(60)\n"


def console_script() -> str:
    """The `ironrt` console script of this interpreter (not a pyenv/asdf shim)."""
    beside = Path(sys.executable).parent / "ironrt"
    if beside.exists():
        return str(beside)
    found = shutil.which("ironrt")
    return found or ""


# ---- floor: plain Popen ----------------------------------------------------------------


def popen_floor(command: list[str], n: int, workdir: Path, deadline: Deadline) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    starts: list[float] = []
    stops: list[float] = []
    t_all = time.perf_counter()
    try:
        for i in range(n):
            if deadline.passed():
                break
            t0 = time.perf_counter()
            with open(workdir / f"floor-{i}.log", "ab") as log:
                procs.append(
                    subprocess.Popen(
                        command,
                        cwd=workdir,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                        close_fds=True,
                    )
                )
            starts.append(time.perf_counter() - t0)
        start_wall = time.perf_counter() - t_all
        time.sleep(0.5)  # let them all be running (as the daemon's are when stopped)
        t_all = time.perf_counter()
        for p in procs:
            t0 = time.perf_counter()
            p.terminate()
            p.wait(10)
            stops.append(time.perf_counter() - t0)
        stop_wall = time.perf_counter() - t_all
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    return {
        "n": len(starts),
        "start": summary(starts),
        "stop": summary(stops),
        "start_wall_s": start_wall,
        "stop_wall_s": stop_wall,
    }


# ---- ironrt ------------------------------------------------------------------------------


def warm_daemon(workdir: Path) -> None:
    """One daemon started, given an agent and stopped, unmeasured: what a daemon imports
    beyond `WARM_BYTECODE` is compiled into the cache here, not in the first measured
    daemon (where it took its RSS up by ~4 MiB)."""
    with TempDaemon(env={**DAEMON_ENV, **as_installed(workdir / "pycache")}) as d:
        agent = d.rt.start_agent("sleep", ["60"], cwd=str(workdir), budget=1.0)
        d.rt.stop_agent(agent)


def ironrt_run(
    kind: str,
    command: list[str],
    n: int,
    workdir: Path,
    deadline: Deadline,
    cli_runs: int,
    list_runs: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {"truncated": False}
    with TempDaemon(env={**DAEMON_ENV, **as_installed(workdir / "pycache")}) as d:
        assert d.proc is not None
        pid = d.proc.pid
        rt = d.rt
        time.sleep(0.5)
        out["rss_idle_mb"] = rss_mb(pid)
        ids: list[str] = []
        starts: list[float] = []
        t_all = time.perf_counter()
        for _ in range(n):
            if deadline.passed():
                out["truncated"] = True
                break
            t0 = time.perf_counter()
            ids.append(rt.start_agent(command[0], command[1:], cwd=str(workdir), budget=1.0))
            starts.append(time.perf_counter() - t0)
        out["start_wall_s"] = time.perf_counter() - t_all
        out["start"] = summary(starts)
        out["n"] = len(ids)

        lists: list[float] = []
        for _ in range(list_runs):
            t0 = time.perf_counter()
            agents = rt.list_agents()
            lists.append(time.perf_counter() - t0)
        out["list"] = summary(lists)
        out["listed"] = len(agents)
        out["running"] = sum(1 for a in agents if a.status.live)

        metrics: list[float] = []
        for agent_id in ids:
            t0 = time.perf_counter()
            rt.get_metrics(agent_id)
            metrics.append(time.perf_counter() - t0)
        out["metrics"] = summary(metrics)

        time.sleep(1.5)  # a sampler pass or two with N agents
        out["rss_loaded_mb"] = rss_mb(pid)
        cpu = _cpu_seconds(pid)
        time.sleep(2.0)
        out["daemon_idle_cpu_pct_with_agents"] = (_cpu_seconds(pid) - cpu) / 2.0 * 100

        if kind == "sleep":  # the CLI is timed once, with N agents live
            script = console_script()
            cli_budget = max(min(deadline.left() - 20, 60), 5)
            out["cli"] = {
                "ps": median_run([script, "ps"], cli_runs, env=d.env, budget_s=cli_budget / 2),
                "ps_json": median_run(
                    [script, "ps", "--json"], cli_runs, env=d.env, budget_s=cli_budget / 2
                ),
            }
            probe = subprocess.run(
                [script, "ps", "--json"], env=d.env, capture_output=True, text=True, timeout=30
            )
            out["cli"]["ps_json_bytes"] = len(probe.stdout)
            out["cli"]["ps_exit"] = probe.returncode
            if probe.returncode:
                out["cli"]["ps_stderr"] = probe.stderr[-500:]

        stops: list[float] = []
        t_all = time.perf_counter()
        for agent_id in ids:
            if deadline.left() < 5:
                out["truncated"] = True
                break
            t0 = time.perf_counter()
            rt.stop_agent(agent_id, timeout=10)
            stops.append(time.perf_counter() - t0)
        out["stop_wall_s"] = time.perf_counter() - t_all
        out["stop"] = summary(stops)
        time.sleep(0.5)
        out["rss_after_stop_mb"] = rss_mb(pid)
    return out


def _cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def bare_python_rss() -> float:
    """RSS of an idle bare interpreter: the floor the daemon's RSS is compared with."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)"])
    try:
        time.sleep(0.4)
        return rss_mb(p.pid)
    finally:
        p.kill()
        p.wait(5)


# ---- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~20 s smoke run (20 agents per kind)")
    ap.add_argument("--agents", type=int, default=None, help="agents per kind (default 100)")
    ap.add_argument("--kinds", default="sleep,python", help="comma list of: sleep, python")
    ap.add_argument("--budget", type=float, default=None, help="wall-clock cap in seconds")
    args = ap.parse_args(argv)
    n = args.agents or (20 if args.quick else 100)
    cli_runs = 5 if args.quick else 15
    list_runs = 5 if args.quick else 20
    deadline = Deadline(args.budget or (45 if args.quick else 170))
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]

    results: dict[str, Any] = {
        "machine": machine(),
        "agents": n,
        "kinds": {},
        "targets": {
            "ps_ms": TARGET_PS_MS,
            "start_stop_ratio": TARGET_START_STOP_RATIO,
            "rss_mb": TARGET_RSS_MB,
        },
    }
    workdir = Path(tempfile.mkdtemp(prefix="irt-bench-"))
    try:
        (workdir / "tiny_agent.py").write_text(TINY_AGENT)
        commands = {"sleep": ["sleep", "60"], "python": ["tiny_agent.py"]}
        floors = {"sleep": ["sleep", "60"], "python": [sys.executable, "tiny_agent.py"]}

        script = console_script()
        base_env = {
            **os.environ,
            **as_installed(workdir / "pycache"),
            "IRONRT_HOME": str(workdir / "nohome"),
            "IRONRT_NO_AUTOSTART": "1",
        }
        warm_bytecode(sys.executable, base_env)  # measured as installed: .pyc there
        subprocess.run([script, "ps"], env=base_env, capture_output=True, timeout=60)  # the CLI's
        results["startup"] = {
            "python_c_pass": median_run([sys.executable, "-c", "pass"], cli_runs, env=base_env),
            "ironrt_help": median_run([script, "--help"], cli_runs, env=base_env),
            "python_m_ironrt_help": median_run(
                [sys.executable, "-m", "ironrt", "--help"], cli_runs, env=base_env
            ),
            "console_script": script,
        }
        shim = shutil.which("ironrt")
        if shim and shim != script:
            results["startup"]["shim_ironrt_help"] = median_run(
                [shim, "--help"], cli_runs, env=base_env
            )
            results["startup"]["shim"] = shim
        results["bare_python_rss_mb"] = bare_python_rss()

        warm_daemon(workdir)
        for kind in kinds:
            floor = popen_floor(floors[kind], n, workdir, deadline)
            ours = ironrt_run(kind, commands[kind], n, workdir, deadline, cli_runs, list_runs)
            results["kinds"][kind] = {"popen": floor, "ironrt": ours}
            if deadline.passed():
                results["truncated"] = True
                break
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    report(results)
    path = write_results(NAME, results)
    print(f"\nJSON: {path}")
    return 0


def report(r: dict[str, Any]) -> None:
    n = r["agents"]
    s = r["startup"]
    base = s["python_c_pass"]["median"]
    cbase = s["python_c_pass"]["cpu_median"]
    rows = [["python -c pass (baseline)", base, 1.0, cbase, 1.0]]
    for key, label in (
        ("ironrt_help", "ironrt --help"),
        ("python_m_ironrt_help", "python -m ironrt --help"),
        ("shim_ironrt_help", "ironrt --help (shim)"),
    ):
        if key in s:
            rows.append(
                [
                    label,
                    s[key]["median"],
                    ratio(s[key]["median"], base),
                    s[key]["cpu_median"],
                    ratio(s[key]["cpu_median"], cbase),
                ]
            )
    for res in r["kinds"].values():
        cli = res["ironrt"].get("cli")
        if cli:
            for key, label in (("ps", "ironrt ps"), ("ps_json", "ironrt ps --json")):
                rows.append(
                    [
                        f"{label} ({res['ironrt']['n']} agents)",
                        cli[key]["median"],
                        ratio(cli[key]["median"], base),
                        cli[key]["cpu_median"],
                        ratio(cli[key]["cpu_median"], cbase),
                    ]
                )
    print(
        table(
            f"CLI end to end, median of runs ({s['console_script']})",
            ["command", "wall ms", "x baseline", "CPU ms", "x baseline"],
            rows,
        )
    )
    print()

    for kind, res in r["kinds"].items():
        f, o = res["popen"], res["ironrt"]
        rows = []
        for op in ("start", "stop"):
            for q in ("p50", "p99"):
                rows.append([f"{op} ({q})", f[op][q], o[op][q], ratio(o[op][q], f[op][q])])
        ss_f = f["start"]["p50"] + f["stop"]["p50"]
        ss_o = o["start"]["p50"] + o["stop"]["p50"]
        rows.append(["start+stop per agent (p50 sum)", ss_f, ss_o, ratio(ss_o, ss_f)])
        wall_f = (f["start_wall_s"] + f["stop_wall_s"]) * 1000
        wall_o = (o["start_wall_s"] + o["stop_wall_s"]) * 1000
        rows.append([f"start+stop all {o['n']} (wall ms)", wall_f, wall_o, ratio(wall_o, wall_f)])
        rows.append(["list_agents (p50)", float("nan"), o["list"]["p50"], float("nan")])
        rows.append(["list_agents (p99)", float("nan"), o["list"]["p99"], float("nan")])
        rows.append(["get_metrics (p50)", float("nan"), o["metrics"]["p50"], float("nan")])
        rows.append(["get_metrics (p99)", float("nan"), o["metrics"]["p99"], float("nan")])
        print(
            table(
                f"Agents '{kind}' x{o['n']}: ms per operation, Popen floor vs ironrt client",
                ["operation", "Popen ms", "ironrt ms", "ratio"],
                rows,
            )
        )
        print()
        bare = r["bare_python_rss_mb"]
        rows = [
            ["bare python interpreter (baseline)", bare, 1.0],
            ["daemon idle, 0 agents", o["rss_idle_mb"], ratio(o["rss_idle_mb"], bare)],
            [f"daemon, {o['n']} agents", o["rss_loaded_mb"], ratio(o["rss_loaded_mb"], bare)],
            [
                "daemon, after stopping all",
                o["rss_after_stop_mb"],
                ratio(o["rss_after_stop_mb"], bare),
            ],
        ]
        print(
            table(
                f"Daemon RSS MiB ('{kind}' agents; idle CPU with agents: "
                f"{o['daemon_idle_cpu_pct_with_agents']:.1f}%)",
                ["process", "MiB", "x bare python"],
                rows,
            )
        )
        print()

    print("Targets")
    print("-------")
    for kind, res in r["kinds"].items():
        f, o = res["popen"], res["ironrt"]
        ss = ratio(o["start"]["p50"] + o["stop"]["p50"], f["start"]["p50"] + f["stop"]["p50"])
        print(
            f"[{kind}] start+stop per agent {ss:.2f}x Popen (target <= "
            f"{TARGET_START_STOP_RATIO}x): {'PASS' if ss <= TARGET_START_STOP_RATIO else 'FAIL'}"
        )
        print(
            f"[{kind}] daemon RSS {o['rss_loaded_mb']:.1f} MiB with {o['n']} agents (target < "
            f"{TARGET_RSS_MB:.0f}): {'PASS' if o['rss_loaded_mb'] < TARGET_RSS_MB else 'FAIL'}"
        )
        cli = o.get("cli")
        if cli:
            ps = cli["ps"]["median"]
            note = "" if n >= 100 else f" (only {n} agents: not the target's 100)"
            print(
                f"[{kind}] ironrt ps {ps:.1f} ms with {o['n']} agents (target < "
                f"{TARGET_PS_MS:.0f}): {'PASS' if ps < TARGET_PS_MS else 'FAIL'}{note}"
            )
    if r.get("truncated"):
        print("NOTE: the run hit its wall-clock budget and was truncated.")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run TempDaemon cleanup
    sys.exit(main())
