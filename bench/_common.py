"""Shared helpers for the benchmark scripts (not a test module, not part of the package).

Every benchmark prints a table and writes JSON to bench/results/<name>.json; every figure is
reported next to a baseline measured in the same run, as a ratio.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
#: Where each bench writes its JSON (a test points it at a temporary directory).
RESULTS_DIR = Path(os.environ.get("IRONRT_BENCH_RESULTS") or BENCH_DIR / "results")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of an unsorted sequence; nan if empty."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min/max in milliseconds of durations given in seconds."""
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms) if ms else math.nan,
        "min": min(ms) if ms else math.nan,
        "max": max(ms) if ms else math.nan,
    }


def ratio(a: float, b: float) -> float:
    if b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def rss_mb(pid: int, *, tree: bool = False) -> float:
    """Resident set size in MiB of a process (and its descendants if `tree`)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if tree else [])]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total / (1024 * 1024)
    except psutil.Error:
        return math.nan


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.{digits}f}"
    return str(value)


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in header]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "-" * len(title)]
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "python_build": interpreter_build(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "cpu_probe_ns": cpu_probe_ns(),
    }


#: What this interpreter says of its own build, read by `interpreter_build` in whichever
#: interpreter is asked (the benchmark's, or the daemon's when `--daemon-python` names one).
BUILD_PROBE = """
import json, sys, sysconfig
args = sysconfig.get_config_var("CONFIG_ARGS") or ""
try:
    with open("/proc/self/maps") as maps:
        shared = any("libpython" in line for line in maps)
except OSError:
    shared = None
try:
    import ironrt
    where = ironrt.__file__
except ImportError:
    where = None
print(json.dumps({
    "executable": sys.executable,
    "version": sys.version.split()[0],
    "configure_optimizations": "--enable-optimizations" in args,
    "configure_lto": "--with-lto" in args,
    "libpython_shared": shared,
    "ironrt": where,
}))
"""


def interpreter_build(python: str | None = None) -> dict[str, Any]:
    """The interpreter's executable, version, and what of its build can be read back:
    whether `./configure` was given `--enable-optimizations` (PGO) and `--with-lto`, and
    whether the executable calls into a shared libpython; and the ironrt it imports
    (None: none), as a daemon it starts would, from `/`. Builds of one version differ in
    speed for the same code (on 2026-12-01 here, the router's whole call in one process:
    pyenv's 3.11.7, a plain `./configure --enable-shared` build, 887.7k instructions a
    call, Debian's 3.11.2, built with PGO and LTO, 810.9k; CPU a call ~1.1x, within
    this machine's noise in bench/router.py), so every figure names the interpreter it
    ran on. Distributions pass PGO outside `./configure` (Debian's says neither flag): a
    False here means "not said", not "not done"."""
    exe = python or sys.executable
    out = subprocess.run(
        [exe, "-c", BUILD_PROBE], cwd="/", capture_output=True, text=True, timeout=60, check=True
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def cpu_probe_ns(rounds: int = 5, loops: int = 200_000) -> float:
    """How fast this shared machine runs Python right now: the best of `rounds` timings of
    a fixed pure-Python loop, in ns an iteration (lower is faster).

    A figure of CPU (the daemon's CPU a call, calls/s at c=32) follows it from one run to
    the next, where `python -c pass` (mostly start-up and file reads) does not: on
    2026-12-01 `python -c pass` read 70 ms in two runs whose daemon CPU a call differed
    twofold. Compare CPU figures of two runs only with their probes side by side."""
    best = math.inf
    for _ in range(rounds):
        began = time.perf_counter_ns()
        total = 0
        for i in range(loops):
            total += i & 7
        best = min(best, (time.perf_counter_ns() - began) / loops)
    return best


def as_installed(cache: Path) -> dict[str, str]:
    """Environment for measured Python processes so that they run as an installed package
    does: bytecode written to and read from `cache` even if PYTHONDONTWRITEBYTECODE is set
    (as in some sandboxes and CI: then every module whose .pyc is missing is compiled at
    every start, which no user of a pip-installed ironrt pays). An empty value unsets it."""
    return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(cache)}


#: What the daemon imports, at its start and after it: compiled once into a bytecode cache
#: (`as_installed`) before anything is measured (the price tables' module is large:
#: compiled in a measured daemon, it took its memory up by ~10 MiB and its background
#: loading 4x as long).
WARM_BYTECODE = """
import ironrt, ironrt.daemon, ironrt.client, ironrt.policies.pii, prometheus_client
from ironrt.governance.pricing import Pricer
from ironrt.pii import find_pii
Pricer().check("openai", "gpt-4o-mini")
find_pii("call +1 415 555 0100 or 030 1234567")
try:
    import ironrt.policies.pii_checks
except ImportError:  # an older ironrt, measured for comparison
    pass
"""


def warm_bytecode(python: str, env: dict[str, str]) -> None:
    """Compile into the cache `env` names (`as_installed`) what a daemon imports."""
    subprocess.run([python, "-c", WARM_BYTECODE], env=env, check=True, timeout=120)


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=_json_default, allow_nan=True))
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    return repr(obj)


def median_run(
    argv: Sequence[str],
    runs: int,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    budget_s: float = 60.0,
) -> dict[str, Any]:
    """Run a command `runs` times (after one warm-up) and return its wall times.

    Stops early once `budget_s` is spent. Output is discarded but the exit codes are kept.
    """
    import resource

    times: list[float] = []
    cpu: list[float] = []
    codes: set[int] = set()
    deadline = time.monotonic() + budget_s
    subprocess.run(argv, env=env, capture_output=True, timeout=timeout)  # warm the page cache
    for _ in range(runs):
        if time.monotonic() > deadline:
            break
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        codes.add(done.returncode)
    out: dict[str, Any] = summary(times)
    out["median"] = percentile([t * 1000 for t in times], 50)
    #: user+sys CPU of the command (ms): what it costs, whatever else loads the machine.
    out["cpu_median"] = percentile([t * 1000 for t in cpu], 50)
    out["exit_codes"] = sorted(codes)
    return out


def free_port() -> int:
    """A loopback TCP port free now (for a server started next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (nan: gone or unknown)."""
    if pid is None:
        return float("nan")
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return float("nan")
    return float(t.user + t.system)


class Deadline:
    """A wall-clock budget shared by a benchmark's loops."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def passed(self) -> bool:
        return time.monotonic() >= self.end


#: A bench agent that only publishes its IC_TOKEN (to the file named by its argument) and
#: sleeps: the load generator calls the router with that token.
TOKEN_AGENT = """\
import os, sys, time
target = sys.argv[1]
with open(target + ".tmp", "w") as fh:
    fh.write(os.environ["IC_TOKEN"])
os.rename(target + ".tmp", target)
time.sleep(900)
"""


def start_token_agent(d: Any, workdir: Path, name: str, **kw: Any) -> tuple[str, str]:
    """Start a token agent on the TempDaemon `d`: (agent id, its IC_TOKEN)."""
    script = workdir / "hold_token.py"
    script.write_text(TOKEN_AGENT)
    target = workdir / f"token-{name}"
    agent_id = d.rt.start_agent(str(script), [str(target)], name=name, **kw)
    deadline = time.monotonic() + 20
    while not target.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"token agent {name} did not publish its token: {d.rt.logs(agent_id)}"
            )
        time.sleep(0.02)
    return agent_id, target.read_text()
