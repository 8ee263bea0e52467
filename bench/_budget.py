"""Budget figures for bench/router.py: what exact admission buys and what it costs.

- **Scopes**: router throughput at c=32 for an agent whose calls must fit three budget
  scopes (its own, its project's, `global`, each with a budget) vs one (its own), in
  alternating phases against the same zero-latency upstream. Goal: ratio >= 0.95.
- **Sequential utilization**: one agent spends calls of ~2% of its budget one after the
  other until refused; how much of the budget it used, and whether what was left could
  still pay for a call (it must not).
- **Burst**: 64 concurrent calls against ~10 calls' worth with a 0.3 s upstream: how many
  succeed against the 10 that fit (the baseline), spend vs budget.
- **Durability**: the settled cost is committed before the agent receives the end of its
  answer. What that costs on the answer path is one group commit; the alternative (a
  durable hold before forwarding, charged if found unsettled at start) costs one more
  commit before forwarding. Both measured on the same store, in process.

Utilization and burst run against `ironrt.testing.FakeUpstream` (real count endpoints,
usage consistent with `max_tokens`, latency like a provider); throughput against the
bench's own zero-latency upstream.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import start_token_agent

from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream

KEY = "sk-bench-budget-0123456789abcdef"
_token = start_token_agent


def _chat(router: str, token: str, prompt: str, client: httpx.Client) -> int:
    r = client.post(
        router + "/v1/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}]},
    )
    return r.status_code


def sequential_and_burst(quick: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="irt-bench-budget-"))
    out: dict[str, Any] = {}
    with FakeUpstream(latency=0.02) as up:
        env = {
            "IRONRT_OPENAI_BASE_URL": up.url,
            "OPENAI_API_KEY": KEY,
            "IRONRT_SAMPLE_INTERVAL": "1.0",
        }
        with TempDaemon(offline=False, env=env) as d, httpx.Client(timeout=60) as client:
            router = d.router_url
            prompt = "Summarise the quarterly numbers for the board. " * 8
            agent_id, token = _token(d, workdir, "sequential")
            assert _chat(router, token, prompt, client) == 200
            per_call = d.rt.get_agent(agent_id).spent_usd
            calls_worth = 50
            budget = per_call * (calls_worth + 1)  # the first call is already spent
            d.rt.set_budget(agent_id, budget)
            calls, status = 0, 200
            began = time.perf_counter()
            while status == 200 and calls < 200:
                status = _chat(router, token, prompt, client)
                calls += status == 200
            scope = d.rt.get_limits(agent_id)
            left = (scope.budget_usd or 0) - scope.spent_usd
            out["sequential"] = {
                "call_usd": per_call,
                "calls_worth": calls_worth,
                "calls_ok": calls,
                "refused_with": status,
                "used_of_budget": (scope.spent_usd - per_call) / (budget - per_call),
                "left_in_calls": left / per_call,
                "wall_s": time.perf_counter() - began,
            }

            up.latency = 0.3
            n = 64
            burst_id, burst_token = _token(d, workdir, "burst")
            probe = "burst call"
            assert _chat(router, burst_token, probe, client) == 200
            one = d.rt.get_agent(burst_id).spent_usd
            d.rt.set_budget(burst_id, one * 11.5)  # the probe plus ~10.5 calls' worth

            async def burst() -> list[int]:
                async with httpx.AsyncClient(timeout=120) as ac:

                    async def call() -> int:
                        r = await ac.post(
                            router + "/v1/chat/completions",
                            headers={"authorization": f"Bearer {burst_token}"},
                            json={
                                "model": "gpt-4o",
                                "messages": [{"role": "user", "content": probe}],
                            },
                        )
                        return r.status_code

                    return list(await asyncio.gather(*(call() for _ in range(n))))

            began = time.perf_counter()
            statuses = asyncio.run(burst())
            wall = time.perf_counter() - began
            scope = d.rt.get_limits(burst_id)
            out["burst"] = {
                "calls": n,
                "fit": 10,
                "ok": statuses.count(200),
                "refused_402": statuses.count(402),
                "other": len([s for s in statuses if s not in (200, 402)]),
                "spent_of_budget": scope.spent_usd / (scope.budget_usd or 1),
                "overspent": scope.spent_usd > (scope.budget_usd or 0),
                "wall_s": wall,
            }
    return out


def durability(quick: bool) -> dict[str, Any]:
    """p50 of what one settled call's answer waits for to be durable, at c=1 and c=32: the
    books' journal append (the daemon's way: SQLite is committed behind the answers), the
    SQLite group commit it replaced, and the extra commit a durable hold before forwarding
    would need."""
    import anyio

    from ironrt.governance.agent import AgentGovernance
    from ironrt.governance.ledger import Scope
    from ironrt.protocol import Trace
    from ironrt.store.books import Books
    from ironrt.store.db import Database
    from ironrt.store.writer import BatchWriter

    n = 300 if quick else 2000
    home = Path(tempfile.mkdtemp(prefix="irt-bench-dur-"))

    def trace() -> Trace:
        return Trace(
            0,
            "a1",
            "openai",
            "gpt-4o-mini",
            "chat.completions",
            False,
            200,
            10,
            10,
            0,
            0,
            1e-5,
            1.0,
            0.5,
            None,
            "2026-01-01T00:00:00Z",
        )

    async def main() -> dict[str, Any]:
        db = await Database.open(home / "bench.db")
        await db.execute("CREATE TABLE bench_holds (id INTEGER PRIMARY KEY, nanos INTEGER)")
        recorder = Books(db)
        journal_db = await Database.open(home / "journaled.db")
        journaled = Books(journal_db)
        await journaled.open_journal(home / "journaled.db-books")
        holds_writer = BatchWriter.open(home / "bench.db")  # the same fast path as settling
        gov = AgentGovernance("a1", scopes=(Scope("agent:a1"), Scope("global")))
        res: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(recorder.run)
            tg.start_soon(journaled.run)
            for concurrency in (1, 32):
                waits: list[float] = []
                holds: list[float] = []
                appends: list[float] = []

                async def worker(
                    count: int, waits: list[float], holds: list[float], appends: list[float]
                ) -> None:
                    for _ in range(count):
                        t0 = time.perf_counter()
                        await journaled.record(trace(), 1e-5, gov.scopes)
                        appends.append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        await holds_writer.write_many(
                            [("INSERT INTO bench_holds(nanos) VALUES (?)", [(1,)])]
                        )
                        holds.append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        await recorder.record(trace(), 1e-5, gov.scopes)
                        waits.append(time.perf_counter() - t0)

                per = max(n // concurrency, 1)
                began = time.perf_counter()
                async with anyio.create_task_group() as workers:
                    for _ in range(concurrency):
                        workers.start_soon(worker, per, waits, holds, appends)
                wall = time.perf_counter() - began
                res[f"c{concurrency}"] = {
                    "journal_append_p50_ms": statistics.median(appends) * 1000,
                    "settle_commit_p50_ms": statistics.median(waits) * 1000,
                    "hold_commit_p50_ms": statistics.median(holds) * 1000,
                    "calls_per_s_with_both": len(waits) / wall,
                }
            recorder.close()
            journaled.close()
            holds_writer.close()
            tg.cancel_scope.cancel()
        await db.close()
        await journal_db.close()
        return res

    return anyio.run(main)
