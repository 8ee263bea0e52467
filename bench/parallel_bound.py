"""What a second router process could add at concurrency 32 on this machine: an upper
bound, measured, for the decision issue 14 leaves open.

    python bench/parallel_bound.py            # 6 pairs of 3 s phases, ~50 s
    python bench/parallel_bound.py --quick    # 3 pairs of 1.5 s phases

The router is one process: at c=32 its event loop is busy ~100 % of one core while the
other core runs the load generator and the upstream with time to spare. Two router
processes sharing one budget would need a shared ledger (leases, as the fleet ledger
does across daemons, or calls to one ledger process), which costs CPU of its own; this
bench leaves that cost out to find the most a second process could give:

- **one daemon**: 32 connections to one daemon (TempDaemon, default policies, an agent's
  IC_TOKEN), as bench/router.py measures it;
- **two daemons**: 16 connections to each of two daemons (two homes, two ledgers: nothing
  shared, so nothing coordinated), their calls/s added up.

The two run in alternating phases back to back (a pair's ratio is free of the machine's
drift); the median of the pairs' ratios is the figure. Everything (load generator,
upstream, daemons) is on this machine's cores. The load generator and the upstream
take their share of the CPU too, so two processes cannot double the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, machine, start_token_agent, table, write_results
from _loadgen import Target, build_request, saturate
from router import FAKE_KEY, chat_body, start_upstream, stop_proc

from ironrt.tempdaemon import TempDaemon

NAME = "parallel_bound"
PATH = "/v1/chat/completions"
TARGET_RPS = 3000.0


def agent_target(d: TempDaemon, workdir: Path, name: str, body: bytes) -> Target:
    token = start_token_agent(d, workdir, name, budget=1000.0)[1]
    port = int(urlsplit(d.router_url).port or 80)
    req = build_request("127.0.0.1", port, PATH, body, {"authorization": f"Bearer {token}"})
    return Target(name, "127.0.0.1", port, req, req)


async def rate(targets: list[Target], concurrency: int, seconds: float) -> tuple[float, int]:
    """Calls/s summed over `targets`, `concurrency` connections each, and the errors."""
    runs = await asyncio.gather(
        *(saturate(t, "plain", concurrency, seconds, 10**9) for t in targets)
    )
    return sum(len(s.total) / el for s, el in runs), sum(s.errors for s, _ in runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 pairs of 1.5 s phases")
    args = ap.parse_args(argv)
    pairs, phase_s = (3, 1.5) if args.quick else (6, 3.0)
    results: dict[str, Any] = {"machine": machine(), "pairs": [], "phase_s": phase_s}
    upstream, up_port = start_upstream()
    workdir = Path(tempfile.mkdtemp(prefix="irt-bound-"))
    env = {
        "IRONRT_OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}",
        "OPENAI_API_KEY": FAKE_KEY,
        "IRONRT_SAMPLE_INTERVAL": "1.0",
    }
    body = chat_body("Say hello in five words.")
    try:
        with TempDaemon(offline=False, env=env) as d1, TempDaemon(offline=False, env=env) as d2:
            a = agent_target(d1, workdir, "bound-a", body)
            b = agent_target(d2, workdir, "bound-b", body)
            # Warm-up: the agents' first calls, the upstream pools, the specialised code.
            asyncio.run(rate([a], 32, 1.0))
            asyncio.run(rate([a, b], 16, 1.0))
            for _ in range(pairs):
                one, e1 = asyncio.run(rate([a], 32, phase_s))
                two, e2 = asyncio.run(rate([a, b], 16, phase_s))
                results["pairs"].append({"one": one, "two": two, "errors": e1 + e2})
                time.sleep(0.1)
    finally:
        stop_proc(upstream)
    ratios = [p["two"] / p["one"] for p in results["pairs"]]
    results["ratio_median"] = statistics.median(ratios)
    results["one_median"] = statistics.median(p["one"] for p in results["pairs"])
    results["two_median"] = statistics.median(p["two"] for p in results["pairs"])
    rows = [
        [i + 1, p["one"], p["two"], p["two"] / p["one"], p["errors"]]
        for i, p in enumerate(results["pairs"])
    ]
    print(
        table(
            f"Concurrency 32, chat, zero-latency upstream ({pairs} pairs of {phase_s} s phases)",
            ["pair", "one daemon, calls/s", "two daemons 16+16, calls/s", "two / one", "errors"],
            rows,
        )
    )
    print(
        f"\ntwo router processes / one, median of the pairs: {fmt(results['ratio_median'])} "
        f"(range {fmt(min(ratios))}-{fmt(max(ratios))}); two daemons reach "
        f"{results['two_median']:,.0f} calls/s against issue 14's {TARGET_RPS:,.0f} "
        "(an upper bound: no shared ledger)"
    )
    print(f"results: {write_results(NAME, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
