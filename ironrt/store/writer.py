"""A second connection for the hot path's group commits: one thread hop per batch.

Through aiosqlite each statement is a round trip to its thread (BEGIN, each executemany,
COMMIT: five for a batch of settled calls), and the answer of every call now waits for
its batch (its cost is durable before the agent sees the end of its answer). Running the
whole transaction in one worker-thread call cuts that wait to one hop. SQLite in WAL
mode serialises this writer with the daemon's main connection (`busy_timeout`), so
neither needs to know about the other.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio


class BatchWriter:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> BatchWriter:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
        ):
            conn.execute(pragma)
        return cls(conn)

    async def write_many(
        self, batches: list[tuple[str, list[tuple[Any, ...]]]], ids_of: str | None = None
    ) -> list[int]:
        """Each statement over many rows, all in one transaction, in one thread hop.
        Returns the row ids the inserts of statement `ids_of` made, in order."""
        return await anyio.to_thread.run_sync(self._transaction, batches, ids_of)

    def write_now(
        self, batches: list[tuple[str, list[tuple[Any, ...]]]], ids_of: str | None = None
    ) -> list[int]:
        """The same transaction in the calling thread."""
        return self._transaction(batches, ids_of)

    def _transaction(
        self, batches: list[tuple[str, list[tuple[Any, ...]]]], ids_of: str | None
    ) -> list[int]:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                ids = run_statements(conn, batches, ids_of)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return ids

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def run_statements(
    conn: sqlite3.Connection, batches: list[tuple[str, list[tuple[Any, ...]]]], ids_of: str | None
) -> list[int]:
    """Run each statement over its rows (inside the caller's transaction); the ids of the
    rows statement `ids_of` inserted. Inside one write transaction the inserts of one
    statement into an AUTOINCREMENT table take consecutive ids, the last of which is
    `last_insert_rowid()`."""
    ids: list[int] = []
    for sql, rows in batches:
        if not rows:
            continue
        conn.executemany(sql, rows)
        if sql == ids_of:
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            ids.extend(range(last - len(rows) + 1, last + 1))
    return ids
