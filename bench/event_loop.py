"""The daemon on uvloop vs on plain asyncio (IRONRT_EVENT_LOOP), measured alone, in one run.

    python bench/event_loop.py            # ~1.5 minutes
    python bench/event_loop.py --quick    # ~25 s smoke run

Two daemons (TempDaemon, one per loop, same settings otherwise) in front of one fast
upstream (bench/_upstream.py), each called with the IC_TOKEN of a token agent of its own.
The machine is small and noisy, so the loops are compared round by round: each round runs,
for both daemons and the direct path, the same phases in a rotating order (c=1 plain calls
alternating call by call, c=1 streaming, then c=32 phases back to back) and the figures
reported are the medians over rounds of each round's figure. The daemons' CPU per call is
read from /proc, so it holds however loaded the machine is.

Decision rule (issue 14): uvloop stays the default only if it wins at c=1 (added p50) and
at c=32 (req/s); the verdict is printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, ratio, start_token_agent, summary, table, write_results
from _loadgen import Samples, Target, alternate, build_request, saturate
from router import FAKE_KEY, CpuMeter, chat_body, start_upstream, stop_proc

from ironrt.tempdaemon import TempDaemon

NAME = "event_loop"
LOOPS = ("uvloop", "asyncio")
PATH = "/v1/chat/completions"


def loop_in_log(d: TempDaemon) -> str:
    """The loop the daemon says it runs on (its `event loop` line): the check that each
    daemon really runs the loop it is measured as."""
    for line in (d.home / "daemon.log").read_text().splitlines():
        entry = json.loads(line)
        if entry.get("msg") == "event loop":
            return str(entry["event_loop"])
    raise RuntimeError(f"no 'event loop' line in {d.home / 'daemon.log'}")


def target(name: str, url: str, auth: str) -> Target:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", int(parts.port or 80)
    h = {"authorization": f"Bearer {auth}"}
    plain, stream = chat_body("Say hello in five words."), chat_body("Hi.", stream=True)
    return Target(
        name,
        host,
        port,
        build_request(host, port, PATH, plain, h),
        build_request(host, port, PATH, stream, h),
    )


async def one_round(
    direct: Target, daemons: list[Target], pids: dict[str, int], n: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One round of every phase; `n` rotates which daemon goes first."""
    order = daemons[n % 2 :] + daemons[: n % 2]
    out: dict[str, Any] = {}
    with CpuMeter(pids) as cpu:
        s, _ = await alternate([direct, *order], "plain", args.c1, time.monotonic() + 60)
    out["c1"] = {k: summary(v.total) for k, v in s.items()}
    out["c1_errors"] = {k: v.errors for k, v in s.items()}
    out["c1_cpu_ms"] = {k: cpu.used[k] * 1000 / max(1, len(s[k].total)) for k in pids}
    s, _ = await alternate([direct, *order], "stream", args.stream, time.monotonic() + 60)
    out["ttfb"] = {k: summary(v.ttfb) for k, v in s.items()}
    out["c32_rps"], out["c32_p50"], out["c32_cpu_ms"], out["c32_errors"] = {}, {}, {}, {}
    for t in order:
        with CpuMeter({t.name: pids[t.name]}) as cpu:
            got: Samples
            got, elapsed = await saturate(t, "plain", 32, args.phase_s, 1_000_000)
        out["c32_rps"][t.name] = len(got.total) / elapsed
        out["c32_p50"][t.name] = summary(got.total)["p50"]
        out["c32_cpu_ms"][t.name] = cpu.used[t.name] * 1000 / max(1, len(got.total))
        out["c32_errors"][t.name] = got.errors
    return out


def figures(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per loop, the median over rounds of each figure (added = minus the direct path)."""

    def med(values: list[float]) -> float:
        return statistics.median(values)

    out: dict[str, dict[str, float]] = {}
    for loop in LOOPS:
        c1 = [r["c1"] for r in rounds]
        tt = [r["ttfb"] for r in rounds]
        out[loop] = {
            "added_p50_ms": med([x[loop]["p50"] - x["direct"]["p50"] for x in c1]),
            "added_p99_ms": med([x[loop]["p99"] - x["direct"]["p99"] for x in c1]),
            "added_ttfb_p50_ms": med([x[loop]["p50"] - x["direct"]["p50"] for x in tt]),
            "c1_cpu_ms_per_call": med([r["c1_cpu_ms"][loop] for r in rounds]),
            "c32_rps": med([r["c32_rps"][loop] for r in rounds]),
            "c32_p50_ms": med([r["c32_p50"][loop] for r in rounds]),
            "c32_cpu_ms_per_call": med([r["c32_cpu_ms"][loop] for r in rounds]),
            "errors": sum(r["c1_errors"][loop] + r["c32_errors"][loop] for r in rounds),
        }
    out["direct"] = {
        "c1_p50_ms": med([r["c1"]["direct"]["p50"] for r in rounds]),
        "ttfb_p50_ms": med([r["ttfb"]["direct"]["p50"] for r in rounds]),
    }
    return out


def report(f: dict[str, dict[str, float]], rounds: int, wins: dict[str, int]) -> bool:
    uv, aio = f["uvloop"], f["asyncio"]
    lower = {"added_p50_ms", "added_p99_ms", "added_ttfb_p50_ms", "c1_cpu_ms_per_call"}
    lower |= {"c32_p50_ms", "c32_cpu_ms_per_call"}
    rows = [
        [
            key,
            uv[key],
            aio[key],
            ratio(uv[key], aio[key]),
            "lower" if key in lower else "higher",
            f"{wins[key]}/{rounds}",
        ]
        for key in uv
        if key != "errors"
    ]
    rows.append(["errors", uv["errors"], aio["errors"], "", "", ""])
    print(
        table(
            f"Daemon event loop, medians of {rounds} alternating rounds (direct c=1 p50 "
            f"{f['direct']['c1_p50_ms']:.3f} ms)",
            ["figure", "uvloop", "asyncio", "uvloop/asyncio", "better", "uvloop won"],
            rows,
        )
    )
    keep = uv["added_p50_ms"] < aio["added_p50_ms"] and uv["c32_rps"] > aio["c32_rps"]
    print(
        f"\nverdict: uvloop {'wins' if keep else 'does not win'} at both c=1 (added p50) and "
        f"c=32 (req/s): {'keep' if keep else 'drop'} it as the default"
    )
    return keep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~25 s smoke run")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 7)
    args.c1 = 150 if args.quick else 400
    args.stream = 50 if args.quick else 150
    args.phase_s = 1.5 if args.quick else 3.0

    workdir = Path(tempfile.mkdtemp(prefix="irt-bench-loop-"))
    upstream = None
    daemons: dict[str, TempDaemon] = {}
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    try:
        upstream, up_port = start_upstream()
        env = {
            "IRONRT_OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}",
            "OPENAI_API_KEY": FAKE_KEY,
            "IRONRT_SAMPLE_INTERVAL": "1.0",
        }
        targets: list[Target] = []
        pids: dict[str, int] = {}
        for loop in LOOPS:
            d = daemons[loop] = TempDaemon(offline=False, env={**env, "IRONRT_EVENT_LOOP": loop})
            d.start()
            assert d.proc is not None
            if loop_in_log(d) != loop:
                raise RuntimeError(f"the {loop} daemon runs on {loop_in_log(d)}")
            token = start_token_agent(d, workdir, f"bench-{loop}", budget=1000.0)[1]
            targets.append(target(loop, d.router_url, token))
            pids[loop] = d.proc.pid
        direct = target("direct", f"http://127.0.0.1:{up_port}", FAKE_KEY)

        async def run_all() -> list[dict[str, Any]]:
            await alternate([direct, *targets], "plain", 100, time.monotonic() + 30)  # warm-up
            await alternate([direct, *targets], "stream", 30, time.monotonic() + 30)
            for t in targets:
                await saturate(t, "plain", 32, 0.5, 1_000_000)
            out = []
            for n in range(args.rounds):
                out.append(await one_round(direct, targets, pids, n, args))
                print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)
            return out

        rounds = asyncio.run(run_all())
    finally:
        for d in daemons.values():
            d.__exit__(None, None, None)
        stop_proc(upstream)
        shutil.rmtree(workdir, ignore_errors=True)

    f = figures(rounds)
    wins = {
        key: sum(
            1
            for r in [figures([one]) for one in rounds]
            if (r["uvloop"][key] > r["asyncio"][key]) == (key == "c32_rps")
        )
        for key in f["uvloop"]
        if key != "errors"
    }
    results.update(rounds=rounds, figures=f, uvloop_won_rounds=wins)
    results["keep_uvloop"] = report(f, len(rounds), wins)
    print(f"\nJSON: {write_results(NAME, results)}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanups
    sys.exit(main())
