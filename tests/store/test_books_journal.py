"""The books in journal mode, in process on a real database file: the journal is emptied
while running once SQLite holds all of it, and past its cap (SQLite far behind) writes
wait for their commit again, as without a journal."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import pytest

from ironrt.governance.ledger import Scope
from ironrt.protocol import Trace
from ironrt.store import books as books_module
from ironrt.store.books import Books
from ironrt.store.db import Database
from ironrt.store.journal import read_records
from tests.records import trace


def call(i: int) -> Trace:
    return trace(output_tokens=i, ttfb_ms=0.5)


async def run_books(home: Path, calls: int) -> tuple[int, int, list[int]]:
    """Record `calls` calls with the committer running; then the journal's size, the
    traces SQLite holds, and the journal sizes seen after each call."""
    db = await Database.open(home / "ironrt.db")
    books = Books(db)
    await books.open_journal(home / "ironrt.db-books")
    sizes: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(books.run)
        await anyio.wait_all_tasks_blocked()
        for i in range(calls):
            assert await books.record(call(i), (i + 1) * 1e-5, (Scope("agent:a1"),))
            sizes.append((home / "ironrt.db-books").stat().st_size)
            if i % 10 == 9:
                await books.drain()
        await books.drain()
        size = (home / "ironrt.db-books").stat().st_size
        held = await db.scalar("SELECT COUNT(*) FROM traces")
        books.close()
    await db.close()
    return size, int(held), sizes


def test_the_journal_is_emptied_once_sqlite_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(books_module, "_EMPTY_AT", 4096)
    size, held, sizes = anyio.run(run_books, tmp_path, 60)
    assert held == 60
    assert max(sizes) >= 4096  # it grew past the mark...
    assert size < 4096  # ...and was emptied, more than once
    assert sum(1 for a, b in itertools.pairwise(sizes) if b < a) >= 2
    assert read_records(tmp_path / "ironrt.db-books") == []  # a clean stop leaves none


def test_past_its_cap_writes_wait_for_their_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(books_module, "_JOURNAL_CAP", 0)
    size, held, sizes = anyio.run(run_books, tmp_path, 20)
    assert held == 20
    assert size == 0 and set(sizes) == {0}  # nothing journaled: each write was committed
