"""The books' writer: commits on the event loop while the write lock is free, waits for it
in a worker thread when another connection holds it (the loop keeps serving meanwhile,
and the call is written once the lock is released), and keeps the WAL from growing
without end although its own connection never checkpoints inside a commit."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from ironrt.governance.ledger import Ledger
from ironrt.protocol import Trace
from ironrt.store import books as books_module
from ironrt.store import traces as trace_store
from ironrt.store.books import Books
from ironrt.store.db import Database
from tests.store.test_usage_rollups import BASE, trace

pytestmark = pytest.mark.anyio


async def _open(tmp_path: Path) -> Database:
    await anyio.Path(tmp_path).mkdir(exist_ok=True)
    db = await Database.open(tmp_path / "state.db")
    await db.migrate()
    return db


def _count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM traces").fetchone()[0])


async def test_a_held_write_lock_delays_the_commit_without_stalling_the_loop(
    tmp_path: Path,
) -> None:
    db = await _open(tmp_path)
    books = Books(db)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(books.run)
            assert await books.record(trace(BASE), 1.0, ())  # the lock free: written at once
            other.execute("BEGIN IMMEDIATE")  # another connection takes the write lock
            ticks = 0
            recorded: list[bool] = []

            async def record() -> None:
                recorded.append(await books.record(trace(BASE + dt.timedelta(seconds=1)), 2.0, ()))

            async def tick() -> None:
                nonlocal ticks
                while not recorded:
                    ticks += 1
                    await anyio.sleep(0.01)

            tg.start_soon(record)
            tg.start_soon(tick)
            await anyio.sleep(0.3)
            # The call waits for the lock in a worker thread; the loop kept running.
            assert recorded == [] and ticks >= 10
            other.execute("COMMIT")
            with anyio.fail_after(10):
                while not recorded:
                    await anyio.sleep(0.01)
            assert recorded == [True]
            assert _count(tmp_path / "state.db") == 2
            books.close()
    finally:
        other.close()
        await db.close()


async def _wal_after_bursts(tmp_path: Path) -> int:
    """The WAL's size after 8 bursts of 50 calls, a pause after each."""
    db = await _open(tmp_path)
    books = Books(db)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(books.run)
            for i in range(400):
                assert await books.record(trace(BASE + dt.timedelta(seconds=i)), float(i), ())
                if i % 50 == 49:
                    await anyio.sleep(0.25)
            books.close()
        assert _count(tmp_path / "state.db") == 400
        return (tmp_path / "state.db-wal").stat().st_size
    finally:
        await db.close()


async def test_the_wal_is_checkpointed_off_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the books' checkpoints (its connection never checkpoints in a commit, and
    # nothing else writes here) the WAL holds every commit; with them it is started over
    # after each pause, and stays the size of one burst.
    monkeypatch.setattr(books_module, "CHECKPOINT_EVERY_S", 3600.0)
    never = await _wal_after_bursts(tmp_path / "never")
    monkeypatch.setattr(books_module, "CHECKPOINT_EVERY_S", 0.05)
    checkpointed = await _wal_after_bursts(tmp_path / "checkpointed")
    assert checkpointed * 4 < never, (checkpointed, never)


async def _append(results: list[bool], write: Any) -> None:
    results.append(await write())


async def test_a_batch_sums_its_rollups_and_keeps_the_last_running_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 calls settling in one turn of the loop commit as one batch: each rollup row gets
    the batch's sums in one upsert, and each agent's and scope's running total the last
    value queued, a scope's removal kept after the spend queued before it."""
    db = await _open(tmp_path)
    books = Books(db)
    agents = (("a1", "alpha", "proj-a"), ("b2", "beta", None))
    ledger = Ledger()
    scope_a, scope_b = ledger.scope("agent:a1"), ledger.scope("agent:b2")
    sizes: list[int] = []
    statements_of = books_module._statements_of

    def counted(batch: list[Any]) -> Any:
        sizes.append(len(batch))
        return statements_of(batch)

    monkeypatch.setattr(books_module, "_statements_of", counted)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(books.run)
            await books.record(trace(BASE, agent=agents[0]), 0.0, ())  # the writer is open
            results: list[bool] = []

            async def call(i: int, agent: tuple[str, str, str | None]) -> None:
                t = trace(BASE + dt.timedelta(minutes=i % 90), agent=agent, cost=0.001 * (i + 1))
                results.append(await books.record(t, float(i), ()))

            async def burst() -> None:
                async with anyio.create_task_group() as calls:
                    for i in range(64):
                        calls.start_soon(call, i, agents[i % 2])

            scope_a.spent_nanos, scope_b.spent_nanos = 5, 9

            async def scopes() -> None:
                # Queued in one turn: b's spend, then b's removal, then a's spend.
                async with anyio.create_task_group() as queued:
                    for write in (
                        lambda: books.record(trace(BASE, agent=agents[1]), 2.0, (scope_b,)),
                        lambda: books.delete_scope(scope_b.key),
                        lambda: books.record(trace(BASE, agent=agents[0]), 1.0, (scope_a,)),
                    ):
                        queued.start_soon(_append, results, write)

            async with anyio.create_task_group() as both:
                both.start_soon(burst)
                both.start_soon(scopes)
            assert results and all(results)
            books.close()
        with sqlite3.connect(tmp_path / "state.db") as conn:
            for table, bucket in (("usage_hourly", "hour"), ("usage_daily", "day")):
                width = 13 if table == "usage_hourly" else 10
                sums = conn.execute(
                    f"SELECT {bucket}, agent_id, sum(calls), sum(input_tokens), "
                    f"round(sum(cost_usd), 9) FROM {table} GROUP BY 1, 2 ORDER BY 1, 2"
                ).fetchall()
                from_traces = conn.execute(
                    f"SELECT substr(started_at, 1, {width}), agent_id, count(*), "
                    "sum(input_tokens), round(sum(cost_usd), 9) FROM traces GROUP BY 1, 2 "
                    "ORDER BY 1, 2"
                ).fetchall()
                assert sums == from_traces, table
            spent = dict(conn.execute("SELECT scope, spent_nanos FROM scopes").fetchall())
            assert spent["agent:a1"] == 5 and "agent:b2" not in spent  # removed after its spend
        assert max(sizes) >= 32  # the burst did commit as batches
    finally:
        await db.close()


async def test_traces_holding_none_are_inserted_with_null_in_the_text_in_settle_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite3 binds a None through its adaptation protocol (~0.9 us each, a trace holds
    several): the books write NULL into the insert's text instead, one text per pattern of
    NULLs. 48 calls of mixed patterns settle in one turn: no None is bound, each row holds
    exactly its call's values (NULL where the call had None), and the row ids follow the
    order the calls settled in, each call told its own."""
    db = await _open(tmp_path)
    books = Books(db)
    bound: list[tuple[str, tuple[Any, ...]]] = []
    statements_of = books_module._statements_of

    def spied(batch: list[Any]) -> Any:
        runs = statements_of(batch)
        bound.extend((sql, row) for sql, rows in runs for row in rows)
        return runs

    monkeypatch.setattr(books_module, "_statements_of", spied)
    settled: list[Trace] = []

    async def call(i: int) -> None:
        t = trace(
            BASE + dt.timedelta(seconds=i),
            agent=("a1", "alpha", "proj" if i % 2 else None),
            cost=None if i % 3 == 0 else 0.001 * i,
            status=500 if i % 5 == 0 else 200,
            refusal="budget" if i % 7 == 0 else None,
        )
        t = msgspec.structs.replace(
            t, ttfb_ms=float(i) if i % 4 else None, pid=1000 + i if i % 6 else None
        )
        settled.append(t)  # queued in this order: `record` queues before it awaits
        assert await books.record(t, 0.0, ())

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(books.run)
            await books.record(trace(BASE), 0.0, ())  # the writer is open
            async with anyio.create_task_group() as calls:
                for i in range(48):
                    calls.start_soon(call, i)
            books.close()
        inserts = [(sql, row) for sql, row in bound if sql in trace_store.INSERTS]
        assert len(inserts) == 49
        assert not [row for _, row in inserts if None in row]
        assert len({sql for sql, _ in inserts}) > 8  # many patterns, so many texts
        ids = [t.id for t in settled]
        assert ids == sorted(ids) and len(set(ids)) == 48 and ids[0] > 0
        with sqlite3.connect(tmp_path / "state.db") as conn:
            columns = trace_store._COLUMNS
            for t in settled:
                row = conn.execute(
                    f"SELECT {', '.join(columns)} FROM traces WHERE id = ?", (t.id,)
                ).fetchone()
                want = trace_store.insert_statement(t)[1]
                assert row == want, (t.id, row, want)
    finally:
        await db.close()


def test_insert_runs_keep_the_rows_order_and_one_text_per_pattern_of_nulls() -> None:
    """Runs follow the rows' order (the ids a transaction gives stay in settle order); a
    row whose nullable values differ only in type (an int cost where a float was) joins
    the run before it; a pattern met again after another opens a run of its own."""
    ok = ("a", "openai", "m", "chat", 0, 200, 1, 1, 0, 0, 0.5, 1.0, 1.0, None)
    ok += ("t", "n", None, None, "m", None, 1.0)
    int_cost = (*ok[:10], 1, *ok[11:])
    failed = (*ok[:13], "upstream answered 500", *ok[14:])
    runs = trace_store.insert_runs([ok, int_cost, failed, ok])
    assert [(sql.count("NULL"), len(rows)) for sql, rows in runs] == [(4, 2), (3, 1), (4, 1)]
    assert runs[0][0] == runs[2][0] and runs[0][1][1][10] == 1
    assert all(
        None not in row and len(row) == 21 - sql.count("NULL") for sql, r in runs for row in r
    )
