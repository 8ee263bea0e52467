"""Usage over 1,000,000 calls: the rollups against a plain SUM over the traces.

    python bench/usage.py                # 1,000,000 traces over 30 days (defaults)
    python bench/usage.py --rows 200000  # quicker

Writes the traces with the books' statements (`ironrt.store.traces`: the trace INSERT, the
hourly and daily rollup upserts, summed per batch), with executemany in large
transactions, into a fresh database at the current schema (its indexes included): 50
agents in 5 projects, two models each, over 30 days, 3 % refused and 2 % failed calls.
Then, for each grouping (model, agent, day, hour), times `ironrt.store.usage.usage` over
all time and over a range whose both ends fall inside an hour (so its whole days come
from `usage_daily`, the whole hours of its two partial days from `usage_hourly` and its
edges from the traces), and, in the same run, the baseline: one `SUM ... GROUP BY` over
the traces of the same range. Each figure is the median of 5 runs, in ms; the goal is
under 100 ms at 1,000,000 calls. The answers are checked to agree with the baseline
(calls exactly, cost to 1e-9).

Measured on a 2-core machine (96,000 hourly and 6,200 daily rollup rows): all time by
model 10 ms, by agent 15, by day 6, by hour 56-82 (every hourly row: the slowest case);
the ranges with partial hours 10-26 ms; the plain SUM 250-2,900 ms. With the hourly
rollups alone (schema v10) all time took 166-447 ms, the ranges 42-47.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine, ratio, table, write_results
from ironrt.protocol import Trace
from ironrt.store import traces as trace_store
from ironrt.store import usage as usage_store
from ironrt.store.db import Database
from ironrt.store.usage import iso

GOAL_MS = 100.0
RUNS = 5
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "claude-haiku-4-5", "claude-sonnet-4-5")
_KEYS = {
    "model": "model",
    "agent": "agent_id",
    "day": "substr(started_at, 1, 10)",
    "hour": "substr(started_at, 1, 13)",
}


def generate(path: Path, rows: int, days: int, seed: int = 1) -> float:
    """`rows` traces and their rollups; seconds taken. The traces go in with the books'
    INSERT; the rollups with the books' upserts (`ROLLUP_SQL`, `DAILY_ROLLUP_SQL`), summed
    per batch first (the same rows a per-trace upsert leaves, in far fewer statements)."""
    rnd = random.Random(seed)
    end = time.time()
    start_ms = int((end - days * 86400) * 1000)
    span_ms = days * 86400 * 1000
    agents = [(f"agent{n:02d}x{seed}", f"bot-{n}", f"proj-{n % 5}") for n in range(50)]
    uses = {a[0]: rnd.sample(MODELS, 2) for a in agents}
    insert_sql = trace_store.insert_statement(_example())[0]
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    began = time.perf_counter()
    batch = 100_000
    # In time order, as a daemon records them.
    offsets = sorted(rnd.randrange(span_ms) for _ in range(rows))
    for first in range(0, rows, batch):
        inserts: list[tuple[Any, ...]] = []
        sums: dict[tuple[Any, ...], list[Any]] = {}
        for offset in offsets[first : first + batch]:
            at_ms = start_ms + offset
            started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms // 1000))
            started += f".{at_ms % 1000:03d}Z"
            agent_id, name, project = rnd.choice(agents)
            model = rnd.choice(uses[agent_id])
            provider = "anthropic" if model.startswith("claude") else "openai"
            roll = rnd.random()
            refused = roll < 0.03
            status = 402 if refused else 500 if roll < 0.05 else 200
            i = 0 if refused else rnd.randrange(20, 4000)
            o = 0 if refused else rnd.randrange(1, 800)
            cost = None if refused else rnd.random() / 100
            error = "budget exhausted" if refused else None
            inserts.append(
                (agent_id, provider, model, "chat.completions", int(roll > 0.5), status, i, o,
                 0, 0, cost, 50.0, None, error, started, name, project, None, model,
                 "budget_exhausted" if refused else None, 1.0)
            )  # fmt: skip
            key = (started[:13], agent_id, name, project, provider, model, int(refused))
            row = sums.setdefault(key, [0, 0, 0, 0, 0, 0, 0.0, 0])
            row[0] += 1
            row[1] += status >= 400
            row[2] += i
            row[3] += o
            row[6] += cost or 0.0
            row[7] += cost is None
        # The days' sums are the sums of their hours (in the batch).
        days: dict[tuple[Any, ...], list[Any]] = {}
        for key, row in sums.items():
            day = days.setdefault((key[0][:10], *key[1:]), [0, 0, 0, 0, 0, 0, 0.0, 0])
            for n, value in enumerate(row):
                day[n] += value
        con.execute("BEGIN")
        con.executemany(insert_sql, inserts)
        # The upserts bind the key then the figures, `calls` first (1 for one call).
        for sql, summed in ((trace_store.ROLLUP_SQL, sums), (trace_store.DAILY_ROLLUP_SQL, days)):
            con.executemany(sql, [(*k, *v) for k, v in summed.items()])
        con.execute("COMMIT")
    took = time.perf_counter() - began
    con.close()
    return took


def _example() -> Trace:
    return Trace(
        id=0,
        agent_id="a",
        provider="openai",
        model="m",
        endpoint="e",
        stream=False,
        status_code=200,
        input_tokens=0,
        output_tokens=0,
        cached_tokens=0,
        reasoning_tokens=0,
        cost_usd=None,
        latency_ms=0.0,
        ttfb_ms=None,
        error=None,
        started_at=iso(dt.datetime.now(dt.timezone.utc)),
    )


def baseline(path: Path, by: str, since: str | None, until: str | None) -> tuple[float, Any]:
    """The plain way: one GROUP BY over every trace of the range."""
    terms, params = ["1"], []
    if since:
        terms.append("started_at >= ?")
        params.append(since)
    if until:
        terms.append("started_at < ?")
        params.append(until)
    con = sqlite3.connect(path)
    try:
        began = time.perf_counter()
        rows = con.execute(
            f"SELECT {_KEYS[by]}, COUNT(*), SUM(input_tokens), SUM(output_tokens), "
            f"SUM(cost_usd) FROM traces WHERE {' AND '.join(terms)} GROUP BY 1",
            params,
        ).fetchall()
        return time.perf_counter() - began, rows
    finally:
        con.close()


async def measure(path: Path, cases: list[tuple[str, str, str | None, str | None]]) -> list[Any]:
    db = await Database.open(path)
    out = []
    try:
        for label, by, since, until in cases:
            ours: list[float] = []
            plain: list[float] = []
            for _ in range(RUNS):
                began = time.perf_counter()
                found = await usage_store.usage(db, by, since=since, until=until)  # type: ignore[arg-type]
                ours.append(time.perf_counter() - began)
                took, rows = await anyio.to_thread.run_sync(baseline, path, by, since, until)
                plain.append(took)
            calls = sum(r.llm_calls + r.refused_calls for r in found.rows)
            expected = sum(r[1] for r in rows)
            cost = sum(r[4] or 0 for r in rows)
            assert calls == expected, (label, by, calls, expected)
            assert abs(found.total_usd - cost) <= 1e-9 * max(cost, 1), (label, by)
            out.append(
                {
                    "range": label,
                    "by": by,
                    "groups": len(found.rows),
                    "calls": calls,
                    "rollups_ms": statistics.median(ours) * 1000,
                    "plain_sum_ms": statistics.median(plain) * 1000,
                }
            )
    finally:
        await db.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="irt-usage-") as tmp:
        path = Path(tmp) / "ironrt.db"
        anyio.run(_create, path)
        write_s = generate(path, args.rows, args.days)
        con = sqlite3.connect(path)
        rollup_rows = con.execute("SELECT COUNT(*) FROM usage_hourly").fetchone()[0]
        daily_rows = con.execute("SELECT COUNT(*) FROM usage_daily").fetchone()[0]
        con.close()
        now = dt.datetime.now(dt.timezone.utc)
        since = iso(now - dt.timedelta(days=7, minutes=17, milliseconds=321))
        until = iso(now - dt.timedelta(days=1, minutes=43, milliseconds=7))
        cases = [
            (label, by, s, u)
            for label, s, u in (("all time", None, None), ("7d..1d, partial hours", since, until))
            for by in ("model", "agent", "day", "hour")
        ]
        results = anyio.run(measure, path, cases)
    for r in results:
        r["ratio"] = ratio(r["rollups_ms"], r["plain_sum_ms"])
        r["under_goal"] = r["rollups_ms"] < GOAL_MS
    print(
        table(
            f"usage over {args.rows:,} calls ({rollup_rows:,} hourly and {daily_rows:,} daily "
            f"rollup rows; written in {write_s:.1f} s, {args.rows / write_s:,.0f} traces/s)",
            ("range", "by", "groups", "rollups ms", "plain SUM ms", "ratio"),
            [
                (r["range"], r["by"], r["groups"], r["rollups_ms"], r["plain_sum_ms"], r["ratio"])
                for r in results
            ],
        )
    )
    worst = max(r["rollups_ms"] for r in results)
    print(f"\nslowest usage query: {worst:.1f} ms (goal < {GOAL_MS:.0f} ms)")
    path_out = write_results(
        "usage",
        {
            "machine": machine(),
            "rows": args.rows,
            "days": args.days,
            "rollup_rows": rollup_rows,
            "daily_rows": daily_rows,
            "write_s": write_s,
            "goal_ms": GOAL_MS,
            "results": results,
        },
    )
    print(f"results: {path_out}")


async def _create(path: Path) -> None:
    db = await Database.open(path)  # the current schema, rollups and indexes included
    await db.close()


if __name__ == "__main__":
    main()
