"""Router benchmark: the ironrt router's added latency and throughput vs direct calls (and
vs the LiteLLM proxy when it is installed), in one run, against one fast local upstream.

    python bench/router.py                 # ~1.5 minutes
    python bench/router.py --quick         # ~20 s smoke run
    python bench/router.py --no-litellm    # skip the peer even if installed
    python bench/router.py --profile       # also py-spy the daemon under load (top functions)

Processes (so that no two share a GIL): this script (the load generator: raw asyncio
sockets, keep-alive, identical for every path), the fake upstream (bench/_upstream.py:
canned OpenAI replies, zero added latency), the ironrt daemon (TempDaemon, a temporary
IRONRT_HOME, pointed at the upstream with a fake key), and optionally the LiteLLM proxy
(pointed at the same upstream). The router is called with the IC_TOKEN of a live agent
started through the daemon (a tiny script that publishes its token and sleeps).

Measured, alternating the paths call by call (concurrency 1: the peer in a phase of its
own, whose after-work would slow the calls that follow it) or phase by phase
(concurrency 32): non-streaming latency p50/p90/p99 and requests/s at c=1 and c=32;
streaming time to first byte (first SSE event) and total at c=1; a 3 KB prompt with PII
through agents with every policy on (PII detect / redact, rate limits set), the same
prompt each call, a new one each call, and a new one each call with the upstream answering
2 ms late (`x-bench-delay-ms`: where a provider's time covers a detecting scan); the daemon's
start-up time (until the router answers) and RSS after the run. Then the budget figures
of bench/_budget.py: c=32 throughput of an agent in three budgeted scopes vs one, the
sequential spender's utilization, the 64-call burst, and the cost of committing each
call's cost before its answer ends.

Targets (issue 14): added p50 <= 0.35 ms and p99 <= 1 ms at c=1; streaming adds <= 0.5 ms
to time to first byte; >= 3,000 requests/s through the router at c=32 (router, load
generator and upstream on the same two cores); with PII detect/redact on a 3 KB prompt
the added p50 stays <= 0.6 ms. Start-up and memory goals: bench/startup.py.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
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
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _budget import durability, sequential_and_burst
from _common import (
    BENCH_DIR,
    RESULTS_DIR,
    Deadline,
    as_installed,
    fmt,
    free_port,
    interpreter_build,
    machine,
    median_run,
    ratio,
    rss_mb,
    start_token_agent,
    summary,
    table,
    warm_bytecode,
    write_results,
)
from _loadgen import Samples, Target, alternate, build_request, saturate

import ironrt
from ironrt.tempdaemon import TempDaemon

NAME = "router"
FAKE_KEY = "sk-bench-upstream-0123456789abcdefABCDEF"
MODEL = "gpt-4o-mini"
LITELLM_VENV = Path(
    os.environ.get(
        "IRONRT_BENCH_LITELLM_VENV", Path.home() / ".cache" / "ironrt-bench" / "litellm-venv"
    )
)
#: Pinned: a release from before the compromised 1.107.0 and installable from the mirror.
LITELLM_SPEC = "litellm[proxy]==1.100.5"
#: Issue 14's goals (the router at the floor). Start-up (<= 0.5 s until the router
#: answers) and RSS (<= 60 MB with 100 agents) are bench/startup.py's.
TARGETS = {
    "added_p50_ms": 0.35,
    "added_p99_ms": 1.0,
    "added_ttfb_ms": 0.5,
    "c32_rps": 3000.0,
    "pii_added_p50_ms": 0.6,
}


def chat_body(content: str, *, stream: bool = False) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


#: The PII phase run again with an upstream that answers this late (a provider never answers
#: sooner): what an agent sees of the scan when a provider's time can cover it.
SLOW_UPSTREAM_MS = 2
SLOW_KEY = "c1_pii_3kb_slow_upstream"


def pii_prompt(size: int = 3072, variant: int | None = None) -> str:
    """About `size` bytes of prose with a handful of PII items (email, phone, card, SSN, IP).

    `variant`: a prompt of its own (its ticket number, address and phone differ), so no
    two variants are the same text: the daemon recalls a text's scan (a conversation's
    history, resent every turn), and a new prompt each call measures the scan itself."""
    filler = (
        "Please summarise the following customer note for the support queue and keep "
        "the tone neutral. The customer describes a delayed delivery, a refund request "
        "and a follow-up call that never happened. "
    )
    who, line = (
        ("jane.doe", "0132") if variant is None else (f"jd{variant}", f"{variant % 10000:04d}")
    )
    pii = (
        f"Contact: {who}@example.com, phone (415) 555-{line}. Card on file 4111 1111 1111 "
        "1111, SSN 123-45-6789, last login from 203.0.113.42. "
    )
    text = "" if variant is None else f"Ticket {variant}. "
    while len(text) < size:
        text += filler + (pii if len(text) % 3 == 0 or len(text) < size // 2 else "")
    return text[:size]


# ---- processes ----------------------------------------------------------------------------


def start_upstream() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "_upstream.py")],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("PORT "):
            return proc, int(line.split()[1])
        if proc.poll() is not None:
            break
    stop_proc(proc)
    raise RuntimeError("the fake upstream did not start")


def stop_proc(proc: subprocess.Popen[Any] | None, grace: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except OSError:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.wait(5)


def http_ok(host: str, port: int, path: str, timeout: float = 1.0) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except OSError:
        return False
    finally:
        conn.close()


def wait_http(
    host: str, port: int, path: str, timeout: float, proc: subprocess.Popen[Any] | None = None
) -> float | None:
    """Seconds until GET path answers 200, or None after `timeout` (or if `proc` died)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if http_ok(host, port, path):
            return time.perf_counter() - t0
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(0.02)
    return None


def token_agent(d: TempDaemon, workdir: Path, name: str, **kw: Any) -> tuple[str, str]:
    return start_token_agent(d, workdir, name, **{"budget": 1000.0, **kw})


class LiteLLM:
    def __init__(self, workdir: Path, upstream_port: int) -> None:
        self.workdir = workdir
        self.upstream_port = upstream_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.startup_s: float | None = None
        self.version = ""
        self.error = ""

    @staticmethod
    def binary() -> Path:
        return LITELLM_VENV / "bin" / "litellm"

    @classmethod
    def install(cls, timeout: float) -> str:
        """Install the pinned LiteLLM into its own venv (never the project's env)."""
        try:
            if not (LITELLM_VENV / "bin" / "python").exists():
                subprocess.run(
                    [sys.executable, "-m", "venv", str(LITELLM_VENV)],
                    check=True,
                    timeout=60,
                    capture_output=True,
                )
            done = subprocess.run(
                [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", LITELLM_SPEC],
                timeout=timeout,
                capture_output=True,
                text=True,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return f"install failed: {exc}"
        return "" if done.returncode == 0 else f"install failed: {done.stderr[-400:]}"

    def start(self, timeout: float) -> bool:
        if not self.binary().exists():
            self.error = f"not installed ({self.binary()} missing; run with --install-litellm)"
            return False
        self.port = free_port()
        config = self.workdir / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            f"      model: openai/{MODEL}\n"
            f"      api_base: http://127.0.0.1:{self.upstream_port}/v1\n"
            f"      api_key: {FAKE_KEY}\n"
            "litellm_settings:\n"
            "  num_retries: 0\n"
            "  request_timeout: 30\n"
            "  telemetry: false\n"
        )
        env = {
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DATABASE_URL"):
            env.pop(var, None)
        log = open(self.workdir / "litellm.log", "wb")  # noqa: SIM115 - handed to the child
        t0 = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                [
                    str(self.binary()),
                    "--config",
                    str(config),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--num_workers",
                    "1",
                ],
                env=env,
                cwd=self.workdir,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        took = wait_http("127.0.0.1", self.port, "/health/liveliness", timeout, self.proc)
        if took is None:
            self.error = f"did not answer within {timeout:.0f} s: {self.log_tail()}"
            self.stop()
            return False
        self.startup_s = time.perf_counter() - t0
        with contextlib.suppress(subprocess.SubprocessError):
            self.version = subprocess.run(
                [
                    str(LITELLM_VENV / "bin" / "python"),
                    "-c",
                    "import importlib.metadata as m; print(m.version('litellm'))",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        return True

    def log_tail(self) -> str:
        try:
            return (self.workdir / "litellm.log").read_text(errors="replace")[-600:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop_proc(self.proc)


# ---- measurement --------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds (user+sys, all threads) used by the processes under test during a phase:
    robust to other load on the machine, unlike wall-clock latency."""

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil

        self.procs = {}
        for name, pid in pids.items():
            try:
                self.procs[name] = psutil.Process(pid)
            except psutil.Error:
                continue
        self.start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        import psutil

        out = {}
        for name, root in self.procs.items():
            total = 0.0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = [root]
            for proc in tree:
                try:
                    t = proc.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    continue
            out[name] = total
        return out

    def __enter__(self) -> CpuMeter:
        self.start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.used = {k: end[k] - self.start.get(k, float("nan")) for k in end}


def lat(s: Samples) -> dict[str, Any]:
    out = summary(s.total)
    out["errors"] = s.errors
    out["statuses"] = s.statuses
    out["rps"] = (1000.0 / out["mean"]) if s.total else float("nan")
    return out


def ttfb(s: Samples) -> dict[str, Any]:
    return {
        "ttfb": summary(s.ttfb),
        "total": summary(s.total),
        "errors": s.errors,
        "statuses": s.statuses,
    }


def cpu_per_call(used: dict[str, float], samples: dict[str, Samples]) -> dict[str, float]:
    """CPU ms per call of each process: the daemon serves the ironrt* paths, LiteLLM its own,
    the upstream every path."""

    def calls(pred: Any) -> int:
        return sum(len(v.total) + v.errors for k, v in samples.items() if pred(k))

    out = {}
    pairs = [
        ("daemon", lambda k: k.startswith("ironrt")),
        ("litellm", lambda k: k == "litellm"),
        ("upstream", lambda k: True),
    ]
    for proc, pred in pairs:
        n = calls(pred)
        if proc in used and n:
            out[proc] = used[proc] * 1000 / n
    return out


async def measure(
    targets: dict[str, Target], args: argparse.Namespace, deadline: Deadline, pids: dict[str, int]
) -> dict[str, Any]:
    res: dict[str, Any] = {}
    peer = "litellm" if "litellm" in targets else None
    every = {"litellm": args.litellm_every}
    main = [targets[k] for k in ("direct", "ironrt", "ironrt_pii_off", "litellm") if k in targets]

    # Warm-up: connections, pools, caches, the router's first-call imports.
    await alternate(main, "plain", 50, time.monotonic() + 30)
    await alternate(main, "stream", 20, time.monotonic() + 30)

    # Concurrency 1: ironrt's paths and the direct baseline alternate call by call; the peer
    # is timed in a phase of its own right after. Interleaved, the CPU the LiteLLM proxy
    # spends after each answer (~10 ms a call, on these two cores) slowed the calls that
    # followed it: ironrt's c=1 added p50, three runs in a row of the same code, read
    # 0.573 ms interleaved, 0.475 ms with the peer apart, 0.437 ms without the peer.
    ours = [t for t in main if t.name != "litellm"]
    for kind, key, iterations, share, cap, stat in (
        ("plain", "c1_plain", args.iterations, 0.3, 60, lat),
        ("stream", "c1_stream", args.stream_iterations, 0.25, 40, ttfb),
    ):
        with CpuMeter(pids) as cpu:
            samples, done = await alternate(
                ours, kind, iterations, time.monotonic() + min(deadline.left() * share, cap)
            )
        res[key] = {
            "iterations": done,
            **{k: stat(v) for k, v in samples.items()},
            "cpu_ms_per_call": cpu_per_call(cpu.used, samples),
        }
        if peer is not None:
            with CpuMeter(pids) as cpu:
                theirs, _ = await alternate(
                    [targets[peer]],
                    kind,
                    max(iterations // every[peer], 1),
                    time.monotonic() + min(deadline.left() * share, cap),
                )
            res[key][peer] = stat(theirs[peer])
            res[key]["cpu_ms_per_call"].update(
                {k: v for k, v in cpu_per_call(cpu.used, theirs).items() if k == peer}
            )

    # c=32: phases alternate direct / router / peer, `rounds` times.
    c32: dict[str, dict[str, Any]] = collections.defaultdict(
        lambda: {"samples": Samples(), "elapsed": 0.0, "phases": [], "cpu": {}}
    )
    order = [t for t in main if t.name != "ironrt_pii_off"]
    for _ in range(args.rounds):
        for t in order:
            if deadline.left() < args.phase_s + 5:
                res["c32_truncated"] = True
                break
            with CpuMeter(pids) as cpu:
                s, elapsed = await saturate(
                    t,
                    "plain",
                    args.concurrency,
                    args.phase_s,
                    max_requests=int(args.phase_s * 20000),
                )
            acc = c32[t.name]
            for proc, used in cpu.used.items():
                acc["cpu"][proc] = acc["cpu"].get(proc, 0.0) + used
            acc["samples"].total.extend(s.total)
            acc["samples"].errors += s.errors
            for code, n in s.statuses.items():
                acc["samples"].statuses[code] = acc["samples"].statuses.get(code, 0) + n
            acc["elapsed"] += elapsed
            acc["phases"].append(len(s.total) / elapsed if elapsed else 0.0)
    res["c32_plain"] = {"concurrency": args.concurrency}
    for name, acc in c32.items():
        out = summary(acc["samples"].total)
        out["errors"] = acc["samples"].errors
        out["statuses"] = acc["samples"].statuses
        out["rps"] = len(acc["samples"].total) / acc["elapsed"] if acc["elapsed"] else 0.0
        out["rps_per_phase"] = acc["phases"]
        calls = len(acc["samples"].total) + acc["samples"].errors
        out["cpu_ms_per_call"] = {k: v * 1000 / calls for k, v in acc["cpu"].items() if calls}
        out["cpu_busy_pct"] = {
            k: v / acc["elapsed"] * 100 for k, v in acc["cpu"].items() if acc["elapsed"]
        }
        res["c32_plain"][name] = out

    # 3 KB prompt with PII, every policy on.
    pii_targets = [
        targets[k]
        for k in ("direct", "ironrt_pii_off", "ironrt_pii_detect", "ironrt_pii_redact")
        if k in targets
    ]
    # The same prompt every call (a conversation's history, resent every turn: the daemon
    # recalls its scan), then a new prompt every call (each one scanned).
    await alternate(pii_targets, "pii", 20, time.monotonic() + 30)
    kinds = (("pii", "c1_pii_3kb"), ("pii_new", "c1_pii_3kb_new"), ("pii_slow", SLOW_KEY))
    for kind, key in kinds:
        with CpuMeter(pids) as cpu:
            samples, done = await alternate(
                pii_targets,
                kind,
                args.pii_iterations,
                time.monotonic() + max(min(deadline.left() - 10, 40), 5),
            )
        res[key] = {"iterations": done, **{k: lat(v) for k, v in samples.items()}}
        # per-variant daemon CPU is not separable within one alternating loop
        res[key]["cpu_ms_per_call"] = cpu_per_call(cpu.used, samples)
    res["peer"] = peer
    return res


async def measure_scopes(one: Target, three: Target, args: argparse.Namespace) -> dict[str, Any]:
    """c=32, an agent in two budgeted scopes (its own, `global`: "one_scope", a name kept for
    the results' sake) and one in three (and `project:bench`), in pairs of short phases back
    to back (the order alternating pair by pair). The ratio is the median of the pairs'
    ratios: a pair's two phases are adjacent in time, so the machine's drift over the run
    (consecutive 4 s phases of one agent differed by 10-20 % on the bench machine) cancels
    out of each, where a ratio of whole-run means kept it."""
    acc: dict[str, list[float]] = {one.name: [], three.name: []}
    totals: dict[str, list[int]] = {one.name: [0, 0], three.name: [0, 0]}
    await saturate(one, "plain", args.concurrency, 1.0, 20000)
    await saturate(three, "plain", args.concurrency, 1.0, 20000)
    pairs = args.rounds * 6
    phase_s = args.phase_s / 4
    ratios: list[float] = []
    for n in range(pairs):
        got: dict[str, float] = {}
        for t in (one, three) if n % 2 == 0 else (three, one):
            s, elapsed = await saturate(t, "plain", args.concurrency, phase_s, int(phase_s * 20000))
            got[t.name] = len(s.total) / elapsed if elapsed else 0.0
            acc[t.name].append(got[t.name])
            totals[t.name][0] += len(s.total)
            totals[t.name][1] += s.errors
        if got[one.name]:
            ratios.append(got[three.name] / got[one.name])
    out: dict[str, Any] = {}
    for name, phases in acc.items():
        out[name] = {
            "rps": sum(phases) / len(phases),
            "phases": phases,
            "calls": totals[name][0],
            "errors": totals[name][1],
        }
    out["pair_ratios"] = ratios
    out["ratio_three_to_one"] = statistics.median(ratios) if ratios else 0.0
    out["ratio_of_means"] = ratio(out[three.name]["rps"], out[one.name]["rps"])
    return out


async def profile_router(
    target: Target, seconds: float, pid: int, out: Path, concurrency: int = 32
) -> dict[str, Any]:
    """py-spy the daemon while the router is driven at `concurrency`; top functions."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    raw = out.with_suffix(".txt")
    raw.parent.mkdir(parents=True, exist_ok=True)  # IRONRT_BENCH_RESULTS may name a new one
    # py-spy runs beside the load, for a bounded time.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-o",
            str(raw),
            "-f",
            "raw",
            "-d",
            str(int(seconds)),
            "-r",
            "200",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    await asyncio.sleep(1.0)
    s, elapsed = await saturate(target, "plain", concurrency, seconds - 1.5, int(seconds * 20000))
    try:
        proc.wait(seconds + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
    if not raw.exists():
        return {"error": (proc.stderr.read().decode() if proc.stderr else "")[-400:]}
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        self_time[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    return {
        "rps_while_profiled": len(s.total) / elapsed,
        "samples": total,
        "raw": str(raw),
        "self": [(f, n / total) for f, n in self_time.most_common(25)],
        "inclusive": [(f, n / total) for f, n in inclusive.most_common(45)],
    }


# ---- main -----------------------------------------------------------------------------------


def daemon_build(python: str) -> tuple[dict[str, Any] | None, str]:
    """`python`'s build if it runs and imports the ironrt this script imports, else why
    not."""
    try:
        build = interpreter_build(python)
    except OSError as exc:
        return None, f"cannot run it ({exc.strerror or exc})"
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"it does not run Python ({last})"
    if build["ironrt"] is None:
        return None, "it cannot import ironrt"
    theirs, ours = Path(build["ironrt"]).resolve(), Path(ironrt.__file__).resolve()
    if theirs != ours:
        return None, f"it imports another ironrt ({theirs}, not {ours})"
    return build, ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~20 s smoke run")
    ap.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    ap.add_argument(
        "--with-litellm",
        action="store_true",
        help="include LiteLLM in --quick runs too (its start-up alone is ~10 s)",
    )
    ap.add_argument(
        "--install-litellm",
        action="store_true",
        help=f"pip install {LITELLM_SPEC} into {LITELLM_VENV} first (bounded)",
    )
    ap.add_argument("--profile", action="store_true", help="py-spy the daemon at c=32 afterwards")
    ap.add_argument("--budget", type=float, default=None, help="wall-clock cap in seconds")
    ap.add_argument(
        "--daemon-python",
        default=None,
        metavar="PATH",
        help="run the daemon under this interpreter (it must import this ironrt): the\n"
        "load generator and the upstream stay on this one, so two runs compare builds",
    )
    args = ap.parse_args(argv)
    own_build = None
    if args.daemon_python is not None:
        own_build, problem = daemon_build(args.daemon_python)
        if own_build is None:
            ap.error(f"--daemon-python {args.daemon_python}: {problem}")
    q = args.quick
    args.iterations = 300 if q else 2500
    args.stream_iterations = 100 if q else 800
    args.pii_iterations = 150 if q else 1000
    args.litellm_every = 5
    args.concurrency = 32
    args.rounds = 1 if q else 2
    args.phase_s = 1.5 if q else 4.0
    if q and not args.with_litellm:
        args.no_litellm = True
    measure_budget = args.budget or (25 if q else 140)

    results: dict[str, Any] = {"machine": machine(), "quick": q, "targets": TARGETS}
    results["daemon_python"] = own_build or results["machine"]["python_build"]
    workdir = Path(tempfile.mkdtemp(prefix="irt-bench-"))
    upstream: subprocess.Popen[str] | None = None
    peer: LiteLLM | None = None
    try:
        upstream, up_port = start_upstream()
        # The daemon's interpreter: its start-up is the daemon's baseline.
        py = args.daemon_python or sys.executable
        results["python_c_pass_ms"] = median_run([py, "-c", "pass"], 3 if q else 7)["median"]
        env = {
            "IRONRT_OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}",
            "OPENAI_API_KEY": FAKE_KEY,
            "IRONRT_SAMPLE_INTERVAL": "1.0",
            "IRONRT_RESTART_BACKOFF": "0.5",
            **as_installed(workdir / "pycache"),
        }
        warm_bytecode(py, {**os.environ, **env})  # measured as installed: .pyc there
        t0 = time.perf_counter()
        with TempDaemon(offline=False, env=env, python=args.daemon_python) as d:
            url = urlsplit(d.router_url)
            rhost, rport = url.hostname or "127.0.0.1", int(url.port or 80)
            if wait_http(rhost, rport, "/health", 20) is None:
                raise RuntimeError("the router did not answer")
            results["daemon_startup_s"] = time.perf_counter() - t0
            assert d.proc is not None
            dpid = d.proc.pid
            results["daemon_rss_before_mb"] = rss_mb(dpid)

            tokens = {
                "ironrt": token_agent(d, workdir, "bench-default")[1],
                "ironrt_pii_off": token_agent(d, workdir, "bench-pii-off", pii="off")[1],
                "ironrt_pii_detect": token_agent(
                    d, workdir, "bench-detect", pii="detect", rpm=10_000_000, tpm=10**9
                )[1],
                "ironrt_pii_redact": token_agent(
                    d, workdir, "bench-redact", pii="redact", rpm=10_000_000, tpm=10**9
                )[1],
            }
            path = "/v1/chat/completions"
            plain, stream = (
                chat_body("Say hello in five words."),
                chat_body("Say hello in five words.", stream=True),
            )
            pii = chat_body(pii_prompt())
            # New prompts: each target its own (two agents never send one text either).
            news = args.pii_iterations + 1
            pii_new = [chat_body(pii_prompt(variant=i)) for i in range(news * 12)]
            results["pii_prompt_bytes"] = len(pii_prompt().encode())

            made: list[str] = []

            def target(name: str, host: str, port: int, auth: str) -> Target:
                h = {"authorization": f"Bearer {auth}"}
                slow = {**h, "x-bench-delay-ms": str(SLOW_UPSTREAM_MS)}
                own = len(made) % 6
                made.append(name)
                return Target(
                    name,
                    host,
                    port,
                    build_request(host, port, path, plain, h),
                    build_request(host, port, path, stream, h),
                    {
                        "pii": build_request(host, port, path, pii, h),
                        "pii_new": [
                            build_request(host, port, path, b, h)
                            for b in pii_new[own * news : (own + 1) * news]
                        ],
                        "pii_slow": [
                            build_request(host, port, path, b, slow)
                            for b in pii_new[(own + 6) * news : (own + 7) * news]
                        ],
                    },
                )

            targets = {"direct": target("direct", "127.0.0.1", up_port, FAKE_KEY)}
            for name, token in tokens.items():
                targets[name] = target(name, rhost, rport, token)

            if args.install_litellm and not args.no_litellm:
                results["litellm_install"] = LiteLLM.install(timeout=480) or "ok"
            if not args.no_litellm:
                peer = LiteLLM(workdir, up_port)
                if peer.start(timeout=90):
                    targets["litellm"] = target("litellm", "127.0.0.1", peer.port, "sk-bench")
                    results["litellm"] = {"version": peer.version, "startup_s": peer.startup_s}
                else:
                    results["litellm"] = {"skipped": peer.error}
                    peer = None
            else:
                results["litellm"] = {"skipped": "--no-litellm"}

            pids = {"daemon": dpid, "upstream": upstream.pid}
            if peer is not None and peer.proc is not None:
                pids["litellm"] = peer.proc.pid
            results.update(asyncio.run(measure(targets, args, Deadline(measure_budget), pids)))
            # Budget scopes: an agent whose calls must fit three budgeted scopes vs two.
            one_token = token_agent(d, workdir, "bench-scope1", pii="off")[1]
            d.rt.set_limits("project:bench", budget_usd=1000.0)
            d.rt.set_limits("global", budget_usd=1_000_000.0)
            three_token = token_agent(d, workdir, "bench-scope3", pii="off", project="bench")[1]
            results["scopes"] = asyncio.run(
                measure_scopes(
                    target("one_scope", rhost, rport, one_token),
                    target("three_scopes", rhost, rport, three_token),
                    args,
                )
            )
            d.rt.remove_limits("global")
            results["daemon_rss_after_mb"] = rss_mb(dpid)
            if peer is not None and peer.proc is not None:
                results["litellm"]["rss_after_mb"] = rss_mb(peer.proc.pid, tree=True)
            if args.profile:
                results["profile_c1"] = asyncio.run(
                    profile_router(
                        targets["ironrt"], 10.0, dpid, RESULTS_DIR / "router-pyspy-c1", 1
                    )
                )
                results["profile"] = asyncio.run(
                    profile_router(
                        targets["ironrt"], 10.0, dpid, RESULTS_DIR / "router-pyspy-c32", 32
                    )
                )
            traces = d.rt.usage(by="agent")
            results["usage_check"] = repr(traces)[:400]
    finally:
        if peer is not None:
            peer.stop()
        stop_proc(upstream)
        shutil.rmtree(workdir, ignore_errors=True)

    results["budget"] = sequential_and_burst(q)
    results["durability"] = durability(q)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    report(results)
    report_budget(results)
    path_out = write_results(NAME, results)
    print(f"\nJSON: {path_out}")
    return 0


def latency_row(name: str, x: dict[str, Any], direct: dict[str, Any], *middle: Any) -> list[Any]:
    """name, n, p50, p90, p99, `middle`, then p50 and p99 added over `direct`, errors."""
    base = name == "direct"
    added = ["", ""] if base else [fmt(x[k] - direct[k]) for k in ("p50", "p99")]
    return [name, x["n"], x["p50"], x["p90"], x["p99"], *middle, *added, x["errors"]]


def describe_build(b: dict[str, Any]) -> str:
    said = [f for f, k in (("PGO", "configure_optimizations"), ("LTO", "configure_lto")) if b[k]]
    link = {True: "shared libpython", False: "libpython linked in", None: "?"}
    flags = "+".join(said) if said else "no PGO/LTO said by ./configure"
    return f"{b['executable']} ({b['version']}; {flags}; {link[b['libpython_shared']]})"


def report(r: dict[str, Any]) -> None:
    peer = r.get("peer")
    print(f"load generator and upstream: {describe_build(r['machine']['python_build'])}")
    print(f"ironrt daemon:               {describe_build(r['daemon_python'])}")
    print()
    c1 = r["c1_plain"]
    names = [n for n in ("direct", "ironrt", "ironrt_pii_off", "litellm") if n in c1]

    def added(name: str, key: str, block: dict[str, Any] = c1, sub: str | None = None) -> float:
        a = block[name][sub][key] if sub else block[name][key]
        b = block["direct"][sub][key] if sub else block["direct"][key]
        return a - b

    rows = [latency_row(n, c1[n], c1["direct"], c1[n]["rps"]) for n in names]
    print(
        table(
            f"Non-streaming, concurrency 1, {c1['iterations']} alternating iterations (ms)",
            ["path", "n", "p50", "p90", "p99", "req/s", "+p50", "+p99", "err"],
            rows,
        )
    )
    print(cpu_line(c1))
    print()

    s = r["c1_stream"]
    rows = []
    for n in names:
        x = s[n]
        rows.append(
            [
                n,
                x["ttfb"]["n"],
                x["ttfb"]["p50"],
                x["ttfb"]["p99"],
                x["total"]["p50"],
                x["total"]["p99"],
                "" if n == "direct" else fmt(x["ttfb"]["p50"] - s["direct"]["ttfb"]["p50"]),
                "" if n == "direct" else fmt(x["total"]["p50"] - s["direct"]["total"]["p50"]),
                x["errors"],
            ]
        )
    print(
        table(
            f"Streaming, concurrency 1, {s['iterations']} alternating iterations (ms)",
            [
                "path",
                "n",
                "ttfb p50",
                "ttfb p99",
                "total p50",
                "total p99",
                "+ttfb p50",
                "+total p50",
                "err",
            ],
            rows,
        )
    )
    print(cpu_line(s))
    print()

    c32 = r["c32_plain"]
    rows = []
    for n in ("direct", "ironrt", "litellm"):
        if n in c32:
            x = c32[n]
            rows.append(
                [
                    n,
                    x["n"],
                    x["rps"],
                    ratio(x["rps"], c32["direct"]["rps"]),
                    x["p50"],
                    x["p90"],
                    x["p99"],
                    x["errors"],
                ]
            )
    print(
        table(
            f"Non-streaming, concurrency {c32['concurrency']} (ms; phases alternate)",
            ["path", "n", "req/s", "x direct", "p50", "p90", "p99", "err"],
            rows,
        )
    )
    for n, proc in (("direct", "upstream"), ("ironrt", "daemon"), ("litellm", "litellm")):
        if n in c32 and proc in c32[n].get("cpu_ms_per_call", {}):
            print(
                f"  {n} phase: {proc} CPU {c32[n]['cpu_ms_per_call'][proc]:.3f} ms/call, busy "
                f"{c32[n]['cpu_busy_pct'][proc]:.0f}% of one core; upstream "
                f"{c32[n]['cpu_ms_per_call'].get('upstream', float('nan')):.3f} ms/call"
            )
    print()

    for key, what in (
        ("c1_pii_3kb", "the same prompt each call (history resent: its scan recalled)"),
        ("c1_pii_3kb_new", "a new prompt each call (scanned)"),
        (SLOW_KEY, f"a new prompt each call, the upstream answering in {SLOW_UPSTREAM_MS} ms"),
    ):
        p = r.get(key)
        if not p:
            continue
        variants = ("direct", "ironrt_pii_off", "ironrt_pii_detect", "ironrt_pii_redact")
        rows = [latency_row(n, p[n], p["direct"]) for n in variants if n in p]
        print(
            table(
                f"3 KB prompt with PII, {what}, concurrency 1, all policies on "
                f"({r['pii_prompt_bytes']} B, {p['iterations']} iterations, ms)",
                ["path", "n", "p50", "p90", "p99", "+p50", "+p99", "err"],
                rows,
            )
        )
        print(cpu_line(p) + " (daemon: mean over the 3 router variants)")
        print()

    lit = r.get("litellm", {})
    rows = [
        ["python -c pass (baseline)", r["python_c_pass_ms"], "", ""],
        [
            "CPU probe (ns a loop iteration, _common.cpu_probe_ns)",
            r["machine"]["cpu_probe_ns"],
            "",
            "",
        ],
        [
            "ironrt daemon start-up -> router answers (ms)",
            r["daemon_startup_s"] * 1000,
            fmt(ratio(r["daemon_startup_s"] * 1000, r["python_c_pass_ms"])),
            fmt(ratio(r["daemon_startup_s"], lit.get("startup_s") or float("nan"))),
        ],
        [
            "ironrt daemon RSS after run (MiB)",
            r["daemon_rss_after_mb"],
            "",
            fmt(ratio(r["daemon_rss_after_mb"], lit.get("rss_after_mb") or float("nan"))),
        ],
    ]
    if peer:
        rows.append(
            [
                f"LiteLLM {lit.get('version')} start-up (ms)",
                lit["startup_s"] * 1000,
                fmt(ratio(lit["startup_s"] * 1000, r["python_c_pass_ms"])),
                1.0,
            ]
        )
        rows.append(["LiteLLM RSS after run (MiB, process tree)", lit.get("rss_after_mb"), "", 1.0])
    print(table("Start-up and memory", ["what", "value", "x python -c pass", "x LiteLLM"], rows))
    if not peer:
        print(f"LiteLLM: skipped ({lit.get('skipped')})")
    print()

    if peer and "litellm" in c32 and "ironrt" in c32:
        rows = [
            [
                "added p50, c=1 (ms)",
                added("ironrt", "p50"),
                added("litellm", "p50"),
                ratio(added("ironrt", "p50"), added("litellm", "p50")),
            ],
            [
                "added p99, c=1 (ms)",
                added("ironrt", "p99"),
                added("litellm", "p99"),
                ratio(added("ironrt", "p99"), added("litellm", "p99")),
            ],
            [
                "added ttfb p50, stream (ms)",
                s["ironrt"]["ttfb"]["p50"] - s["direct"]["ttfb"]["p50"],
                s["litellm"]["ttfb"]["p50"] - s["direct"]["ttfb"]["p50"],
                ratio(
                    s["ironrt"]["ttfb"]["p50"] - s["direct"]["ttfb"]["p50"],
                    s["litellm"]["ttfb"]["p50"] - s["direct"]["ttfb"]["p50"],
                ),
            ],
            [
                "req/s at c=32",
                c32["ironrt"]["rps"],
                c32["litellm"]["rps"],
                ratio(c32["ironrt"]["rps"], c32["litellm"]["rps"]),
            ],
            [
                "start-up (ms)",
                r["daemon_startup_s"] * 1000,
                lit["startup_s"] * 1000,
                ratio(r["daemon_startup_s"], lit["startup_s"]),
            ],
            [
                "RSS after run (MiB)",
                r["daemon_rss_after_mb"],
                lit.get("rss_after_mb"),
                ratio(r["daemon_rss_after_mb"], lit.get("rss_after_mb") or float("nan")),
            ],
        ]
        print(
            table(
                "ironrt vs LiteLLM proxy (same run, same upstream, same load generator)",
                ["figure", "ironrt", "LiteLLM", "ironrt / LiteLLM"],
                rows,
            )
        )
        print()

    print("Targets")
    print("-------")
    checks = [
        ("added p50 at c=1", added("ironrt", "p50"), TARGETS["added_p50_ms"], "ms"),
        ("added p99 at c=1", added("ironrt", "p99"), TARGETS["added_p99_ms"], "ms"),
        (
            "added ttfb p50 (stream)",
            s["ironrt"]["ttfb"]["p50"] - s["direct"]["ttfb"]["p50"],
            TARGETS["added_ttfb_ms"],
            "ms",
        ),
    ]
    for key, which in (("c1_pii_3kb", "resent"), ("c1_pii_3kb_new", "new")):
        p = r.get(key) or {}
        for n in ("ironrt_pii_detect", "ironrt_pii_redact"):
            if n in p:
                checks.append(
                    (
                        f"added p50, 3 KB PII prompt ({which}), {n.rsplit('_', 1)[1]}",
                        p[n]["p50"] - p["direct"]["p50"],
                        TARGETS["pii_added_p50_ms"],
                        "ms",
                    )
                )
    slow = r.get(SLOW_KEY) or {}
    if "ironrt_pii_detect" in slow and "ironrt_pii_off" in slow:
        why = {"detect": "scanned after the answer", "redact": "scanned before sent"}
        for n in ("ironrt_pii_detect", "ironrt_pii_redact"):
            mode = n.rsplit("_", 1)[1]
            over = slow[n]["p50"] - slow["ironrt_pii_off"]["p50"]
            print(
                f"3 KB PII prompt (new), {mode}, upstream answering in {SLOW_UPSTREAM_MS} ms: "
                f"p50 {over:+.3f} ms over PII off ({why[mode]})"
            )
    for label, value, limit, unit in checks:
        print(
            f"{label}: {value:.3f} {unit} (target <= {limit}): "
            f"{'PASS' if value <= limit else 'FAIL'}"
        )
    rps = c32["ironrt"]["rps"] if "ironrt" in c32 else float("nan")
    print(
        f"router req/s at c=32: {rps:,.0f} (target >= {TARGETS['c32_rps']:,.0f}): "
        f"{'PASS' if rps >= TARGETS['c32_rps'] else 'FAIL'}"
    )

    for key, label in (("profile_c1", "c=1"), ("profile", "c=32")):
        print_profile(r.get(key), label)


def report_budget(r: dict[str, Any]) -> None:
    sc = r["scopes"]
    print()
    print(
        table(
            "Budget scopes, concurrency 32 (pairs of phases back to back)",
            ["agent", "req/s", "calls", "errors"],
            [
                [k, sc[k]["rps"], sc[k]["calls"], sc[k]["errors"]]
                for k in ("one_scope", "three_scopes")
            ],
        )
    )
    verdict = "PASS" if sc["ratio_three_to_one"] >= 0.95 else "FAIL"
    pairs = sc.get("pair_ratios", [])
    spread = f"{min(pairs):.3f}-{max(pairs):.3f}" if pairs else "-"
    print(
        f"three scopes / one scope, median of {len(pairs)} back-to-back pairs: "
        f"{sc['ratio_three_to_one']:.3f} (pairs {spread}; ratio of the means "
        f"{sc.get('ratio_of_means', 0.0):.3f}) (goal >= 0.95): {verdict}"
    )
    seq, burst = r["budget"]["sequential"], r["budget"]["burst"]
    print()
    print(
        table(
            "Exact admission (FakeUpstream with latency; baseline: the calls the budget pays for)",
            ["figure", "ironrt", "baseline", "ratio"],
            [
                [
                    "sequential: calls before the 402",
                    seq["calls_ok"],
                    seq["calls_worth"],
                    ratio(seq["calls_ok"], seq["calls_worth"]),
                ],
                [
                    "sequential: share of the budget used",
                    seq["used_of_budget"],
                    1.0,
                    seq["used_of_budget"],
                ],
                ["sequential: left when refused (calls)", seq["left_in_calls"], "< 1", ""],
                [
                    "burst of 64: calls served",
                    burst["ok"],
                    burst["fit"],
                    ratio(burst["ok"], burst["fit"]),
                ],
                [
                    "burst of 64: spend / budget",
                    burst["spent_of_budget"],
                    1.0,
                    burst["spent_of_budget"],
                ],
                [
                    "burst of 64: refusals (402) / others",
                    f"{burst['refused_402']} / {burst['other']}",
                    "",
                    "",
                ],
            ],
        )
    )
    dur = r["durability"]
    print()
    print(
        table(
            "Durability: what each call's answer waits for (in process; ms p50)",
            [
                "concurrency",
                "journal append (chosen)",
                "SQLite commit before the answer",
                "a hold before forwarding",
            ],
            [
                [k, v["journal_append_p50_ms"], v["settle_commit_p50_ms"], v["hold_commit_p50_ms"]]
                for k, v in dur.items()
            ],
        )
    )


def cpu_line(block: dict[str, Any]) -> str:
    cpu = block.get("cpu_ms_per_call", {})
    parts = [f"{k} {v:.3f}" for k, v in cpu.items()]
    return "  CPU ms per call served (contention-proof): " + ", ".join(parts)


def print_profile(prof: dict[str, Any] | None, label: str) -> None:
    if prof and "self" in prof:
        print()
        print(
            f"py-spy on the daemon at {label} ({prof['samples']} samples, "
            f"{prof['rps_while_profiled']:.0f} req/s while sampled; raw: {prof['raw']})"
        )
        print("top self time:")
        for f, share in prof["self"][:15]:
            print(f"  {share * 100:5.1f}%  {f}")
        print("top inclusive:")
        for f, share in prof["inclusive"][:30]:
            print(f"  {share * 100:5.1f}%  {f}")
    elif prof:
        print(f"profile: {prof.get('error')}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanups
    sys.exit(main())
