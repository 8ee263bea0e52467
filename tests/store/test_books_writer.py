"""The books' writer: commits on the event loop while the write lock is free, waits for it
in a worker thread when another connection holds it (the loop keeps serving meanwhile,
and the call is written once the lock is released), and keeps the WAL from growing
without end although its own connection never checkpoints inside a commit."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import anyio
import pytest

from ironrt.store import books as books_module
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
