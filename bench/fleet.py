"""Fleet ledger benchmark: what sharing a budget through PostgreSQL costs, and how much
of it the daemons get to use.

    python bench/fleet.py            # ~1 minute
    python bench/fleet.py --quick    # ~30 s smoke run

A real PostgreSQL (the `pgserver` wheel's server, on a Unix socket, in a temporary
folder), real daemons (TempDaemon) with `IRONRT_LEDGER_URL` set.

- **Throughput**: router calls/s at c=32 for an agent whose budget is a *shared* scope
  (`project:fleet`, admitted against a lease) vs an agent whose budget is its own *local*
  scope (and whose project has none), in alternating phases on the same daemon, against
  the bench's zero-latency upstream. Goal: ratio >= 0.95 (leases keep the database off
  the hot path).
- **Lease transactions per 1,000 calls** in those phases (the daemon's own count of its
  syncs, from `health`), all scopes included.
- **Exhaustion with 3 daemons**: one agent per daemon bursts (8 threads, real `openai`
  SDK) against a shared budget of ~60 calls with a 0.2 s upstream, until refused; how
  much of the budget was spent, against the same burst on one daemon with a local
  budget (the baseline). Goal: >= 95 %, and never over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.fleet.pg

from _common import fmt, machine, ratio, start_token_agent, table, write_results
from _loadgen import Target, build_request, saturate
from router import chat_body, start_upstream, stop_proc

from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.fleet.helpers import BURST
from tests.fleet.pg import Postgres

KEY = "sk-bench-fleet-0123456789abcdef"


def _syncs(d: TempDaemon) -> int:
    ledger = d.rt.health().ledger
    return ledger.syncs if ledger is not None else 0


def _reasons(ds: list[TempDaemon]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        ledger = d.rt.health().ledger
        for k, v in (ledger.syncs_by_reason if ledger is not None else {}).items():
            out[k] = out.get(k, 0) + v
    return out


async def _phases(
    local: Target, shared: Target, rounds: int, phase_s: float
) -> dict[str, dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = {
        t.name: {"rps": [], "calls": 0, "errors": 0} for t in (local, shared)
    }
    for t in (local, shared):
        await saturate(t, "plain", 32, 1.0, 20_000)  # warm: connections, lease
    for n in range(rounds * 2):
        for t in (local, shared) if n % 2 == 0 else (shared, local):
            s, elapsed = await saturate(t, "plain", 32, phase_s, int(phase_s * 20_000))
            acc[t.name]["rps"].append(len(s.total) / elapsed if elapsed else 0.0)
            acc[t.name]["calls"] += len(s.total)
            acc[t.name]["errors"] += s.errors
    return acc


def throughput(pg: Postgres, rounds: int, phase_s: float, workdir: Path) -> dict[str, Any]:
    upstream, port = start_upstream()
    try:
        env = {
            "IRONRT_OPENAI_BASE_URL": f"http://127.0.0.1:{port}",
            "OPENAI_API_KEY": KEY,
            "IRONRT_SAMPLE_INTERVAL": "1.0",
            "IRONRT_LEDGER_URL": pg.new_database(),
        }
        with TempDaemon(offline=False, env=env) as d:
            d.rt.set_limits("project:fleet", budget_usd=1_000_000.0)
            # Both agents are in a project (three scopes each, one budget each): they
            # differ only in where the budget is, the agent's own scope or the shared one.
            _, local_token = start_token_agent(
                d, workdir, "local", budget=1_000_000.0, project="unbudgeted"
            )
            _, shared_token = start_token_agent(d, workdir, "shared", project="fleet")
            url = urlsplit(d.router_url)
            host, rport = url.hostname or "127.0.0.1", int(url.port or 80)
            body = chat_body("Say hello in five words.")

            def target(name: str, token: str) -> Target:
                h = {"authorization": f"Bearer {token}"}
                req = build_request(host, rport, "/v1/chat/completions", body, h)
                return Target(name, host, rport, req, req)

            before = _syncs(d)
            t0 = time.perf_counter()
            acc = asyncio.run(
                _phases(
                    target("local", local_token), target("shared", shared_token), rounds, phase_s
                )
            )
            elapsed = time.perf_counter() - t0
            syncs = _syncs(d) - before
            lease = d.rt.get_limits("project:fleet")
            reasons = _reasons([d])
    finally:
        stop_proc(upstream)
    out: dict[str, Any] = {}
    for name, a in acc.items():
        out[name] = {
            "rps": sum(a["rps"]) / len(a["rps"]),
            "phases": a["rps"],
            "calls": a["calls"],
            "errors": a["errors"],
        }
    calls = sum(a["calls"] for a in acc.values())
    out["ratio_shared_to_local"] = ratio(out["shared"]["rps"], out["local"]["rps"])
    out["lease_syncs"] = syncs
    out["lease_syncs_by_reason"] = reasons
    out["lease_syncs_per_1000_calls"] = 1000 * syncs / calls if calls else 0.0
    out["seconds"] = elapsed
    out["last_lease_usd"] = lease.leased_usd
    return out


def _burst(d: TempDaemon, script: Path, workers: int, limit: int = 200, **kw: Any) -> str:
    return d.rt.start_agent(str(script), [str(workers), str(limit)], **kw)


def _tally(d: TempDaemon, agent_id: str) -> dict[str, int]:
    d.rt.wait(agent_id, timeout=180)
    line = [ln for ln in d.rt.logs(agent_id, tail=100).splitlines() if "TALLY " in ln][-1]
    found: dict[str, int] = json.loads(line.split("TALLY ", 1)[1])
    return found


def exhaustion(pg: Postgres, calls_worth: int, workdir: Path) -> dict[str, Any]:
    script = workdir / "burst.py"
    script.write_text(textwrap.dedent(BURST))
    out: dict[str, Any] = {"calls_worth": calls_worth}
    with FakeUpstream(latency=0.2) as up:
        env = {
            "IRONRT_OPENAI_BASE_URL": up.url,
            "OPENAI_API_KEY": KEY,
            "IRONRT_SAMPLE_INTERVAL": "1.0",
        }
        # Baseline: one daemon, a local budget.
        with TempDaemon(offline=False, env=env) as d:
            probe = _burst(d, script, 1, 1)
            assert _tally(d, probe)["ok"] == 1
            call = d.rt.get_agent(probe).spent_usd
            assert call > 0, "the probe's call cost nothing"
            budget = round(call * calls_worth, 9)
            a = _burst(d, script, 8, budget=budget)
            t0 = time.perf_counter()
            t = _tally(d, a)
            spent = d.rt.get_agent(a).spent_usd
            out["local"] = {
                "budget_usd": budget,
                "spent_usd": spent,
                "used": spent / budget,
                "ok": t["ok"],
                "seconds": time.perf_counter() - t0,
            }
        fleet_env = {**env, "IRONRT_LEDGER_URL": pg.new_database()}
        ds = [TempDaemon(offline=False, env=fleet_env) for _ in range(3)]
        try:
            for d in ds:
                d.start()
            ds[0].rt.set_limits("project:team", budget_usd=budget)
            deadline = time.monotonic() + 10
            while any(d.rt.get_limits("project:team").budget_usd != budget for d in ds):
                if time.monotonic() > deadline:
                    raise RuntimeError("the shared budget did not reach every daemon")
                time.sleep(0.05)
            before = sum(_syncs(d) for d in ds)
            t0 = time.perf_counter()
            agents = [_burst(d, script, 8, project="team") for d in ds]
            tallies = [_tally(d, a) for d, a in zip(ds, agents, strict=True)]
            seconds = time.perf_counter() - t0
            own = [d.rt.get_limits("project:team").own_spent_usd or 0.0 for d in ds]
            syncs = sum(_syncs(d) for d in ds) - before
            ok = sum(t["ok"] for t in tallies)
            out["fleet"] = {
                "budget_usd": budget,
                "spent_usd": sum(own),
                "per_daemon_usd": own,
                "used": sum(own) / budget,
                "over": sum(own) > budget + 1e-9,
                "ok": ok,
                "per_daemon_ok": [t["ok"] for t in tallies],
                "lease_syncs": syncs,
                "lease_syncs_by_reason": _reasons(ds),
                "lease_syncs_per_1000_calls": 1000 * syncs / ok if ok else 0.0,
                "seconds": seconds,
            }
        finally:
            for d in ds:
                d.__exit__(None, None, None)
    return out


def report(r: dict[str, Any]) -> None:
    tp = r["throughput"]
    print(
        table(
            "c=32 router throughput: shared scope (lease) vs local scope, same daemon",
            ["agent", "calls/s", "calls", "errors"],
            [
                [n, fmt(tp[n]["rps"], 0), tp[n]["calls"], tp[n]["errors"]]
                for n in ("local", "shared")
            ],
        )
    )
    print(f"shared / local: {fmt(tp['ratio_shared_to_local'])} (goal >= 0.95)")
    pairs = zip(tp["local"]["phases"], tp["shared"]["phases"], strict=True)
    phases = [f"{a:,.0f}/{b:,.0f}" for a, b in pairs]
    print("phases, local/shared calls/s: " + ", ".join(phases))
    print(
        f"lease transactions per 1,000 calls: {fmt(tp['lease_syncs_per_1000_calls'])} "
        f"({tp['lease_syncs']} in {tp['seconds']:.1f} s: {tp['lease_syncs_by_reason']})"
    )
    ex = r["exhaustion"]
    print(
        table(
            f"budget used at exhaustion (~{ex['calls_worth']} calls' worth, 8 threads per "
            "agent, 0.2 s upstream)",
            ["setup", "used", "calls ok", "over budget", "lease syncs / 1,000 calls", "seconds"],
            [
                [
                    "1 daemon, local budget (baseline)",
                    fmt(ex["local"]["used"]),
                    ex["local"]["ok"],
                    "no",
                    "-",
                    fmt(ex["local"]["seconds"], 1),
                ],
                [
                    "3 daemons, shared budget",
                    fmt(ex["fleet"]["used"]),
                    f"{ex['fleet']['ok']} {ex['fleet']['per_daemon_ok']}",
                    "YES" if ex["fleet"]["over"] else "no",
                    fmt(ex["fleet"]["lease_syncs_per_1000_calls"], 1),
                    fmt(ex["fleet"]["seconds"], 1),
                ],
            ],
        )
    )
    print(
        f"fleet used / local used: {fmt(ratio(ex['fleet']['used'], ex['local']['used']))} "
        "(goal: fleet >= 0.95 of the budget)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="irt-bench-fleet-"))
    pg = Postgres()
    try:
        results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
        results["throughput"] = throughput(
            pg, 1 if args.quick else 3, 2.0 if args.quick else 4.0, workdir
        )
        results["exhaustion"] = exhaustion(pg, 30 if args.quick else 60, workdir)
    finally:
        pg.close()
        shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    write_results("fleet", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
