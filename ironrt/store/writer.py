"""A second connection for the hot path's group commits: one transaction per batch.

Through aiosqlite each statement is a round trip to its thread (BEGIN, each executemany,
COMMIT: five for a batch of settled calls), and the answer of every call waits for its
batch (its cost is durable before the agent sees the end of its answer). Running the
whole transaction in one call cuts that wait to one step: on the event loop's own thread
when the write lock is free (`try_now`: a batch commits in ~0.15 ms, while a hop to a
worker thread and back costs more than that), in a worker thread when another
connection holds the lock (`write_many`, which waits for it up to `busy_timeout`).
Commits no call waits for (behind the answers) go to the worker thread unless the loop
is saturated (`LoopLoad`).

SQLite in WAL mode serialises this writer with the daemon's main connection, so neither
needs to know about the other. This connection never checkpoints on its own
(`wal_autocheckpoint=0`): an automatic checkpoint runs inside the commit that crosses
its threshold and syncs the database file, which would stall the event loop (and the
call waiting for that commit) for milliseconds. `checkpoint` runs one from a worker
thread on a connection of its own instead, and the books call it periodically.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import anyio

#: How long a write waits for another connection's write lock (ms), in a worker thread.
BUSY_TIMEOUT_MS = 5000

Batches = list[tuple[str, list[tuple[Any, ...]]]]

#: The share of the wall time the event loop's thread wanted the CPU, above which it
#: counts as saturated (`LoopLoad`).
SATURATED = 0.9


class LoopLoad:
    """How busy the calling thread (the event loop's) was since it last asked: the share
    of the wall time between two looks it spent running or ready to run.

    Where a commit behind the answers should run depends on it. A saturated loop commits
    itself (`BatchWriter.try_now`): a worker thread's GIL hand-offs cost more CPU than
    they overlap, and every call waits for CPU anyway (measured at c=32: -5 % calls/s in
    the thread). A loop with time to spare hands the commit to the worker thread
    (`write_many`): on the loop, a group of ~36 calls (0.6 ms at c=1) delays whichever
    call arrives meanwhile by all of it, while SQLite releases the GIL as it steps, so in
    the thread the loop goes on serving (c=1 added p99 -0.2 ms, p50 unchanged).

    "Ready to run" counts: on a machine short of CPU the loop is preempted, and its CPU
    time alone would call it idle. Linux tells both (`/proc/thread-self/schedstat` the
    time waiting for a CPU, the thread's clock the time on one); elsewhere the thread's
    CPU time alone stands in.
    """

    __slots__ = ("_fd", "_used", "_wall")

    def __init__(self) -> None:
        self._fd: int | None = None
        self._wall = 0.0
        self._used = 0.0

    def saturated(self) -> bool:
        """Since the last look; the first look starts the clock (and says saturated: the
        commit runs on the loop, as it always may)."""
        wall, used = time.monotonic(), self._wanted()
        elapsed = wall - self._wall if self._wall else 0.0
        busy = (used - self._used) / elapsed if elapsed > 0 else 1.0
        self._wall, self._used = wall, used
        return busy >= SATURATED

    def _wanted(self) -> float:
        """Seconds this thread has run or waited to run (opened on the first look: the
        file is the thread's that opens it)."""
        if self._fd is None:
            try:
                self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._fd = -1
        if self._fd >= 0:
            # The time waiting for a CPU from schedstat (up to date: this thread runs as
            # it reads), the time on one from the thread's clock: schedstat's run time of
            # a running thread lags by up to a scheduler tick (10 ms at HZ=100), and a
            # thread spinning for 50 ms read as 80 % busy.
            try:
                waiting = int(os.pread(self._fd, 128, 0).split()[1])
                return time.thread_time() + waiting / 1e9
            except (OSError, ValueError, IndexError):
                os.close(self._fd)
                self._fd = -1
        return time.thread_time()

    def close(self) -> None:
        if self._fd is not None and self._fd >= 0:
            os.close(self._fd)
        self._fd = None


def _connect(path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={busy_timeout_ms}",
    ):
        conn.execute(pragma)
    return conn


def is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the write lock (SQLITE_BUSY, or SQLITE_LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class BatchWriter:
    def __init__(self, conn: sqlite3.Connection, path: Path | None = None) -> None:
        self._conn = conn
        self._path = path
        self._lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, checkpoints: bool = True) -> BatchWriter:
        """`checkpoints=False`: this connection checkpoints on its own, as SQLite's default
        (a writer whose commits run in a worker thread anyway)."""
        if not checkpoints:
            return cls(_connect(path))
        conn = _connect(path, busy_timeout_ms=0)
        conn.execute("PRAGMA wal_autocheckpoint=0")
        return cls(conn, path)

    async def write_many(
        self, batches: Batches, ids_of: AbstractSet[str] = frozenset()
    ) -> list[int]:
        """Each statement over many rows, all in one transaction, in one thread hop.
        Returns the row ids the inserts of the statements in `ids_of` made, in order."""
        return await anyio.to_thread.run_sync(self._transaction, batches, ids_of)

    def write_now(self, batches: Batches, ids_of: AbstractSet[str] = frozenset()) -> list[int]:
        """The same transaction in the calling thread."""
        return self._transaction(batches, ids_of)

    def try_now(self, batches: Batches, ids_of: AbstractSet[str] = frozenset()) -> list[int] | None:
        """The same transaction in the calling thread if the write lock is free at once;
        None (nothing written) if another connection holds it: never waits for it."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    return None
                raise
            return self._run(conn, batches, ids_of)

    def _transaction(self, batches: Batches, ids_of: AbstractSet[str]) -> list[int]:
        """Waits for the write lock up to `BUSY_TIMEOUT_MS` (this connection's own busy
        timeout is 0, so that `try_now` never blocks the loop): in a worker thread."""
        with self._lock:
            conn = self._conn
            deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
            pause = 0.001
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc) or time.monotonic() >= deadline:
                        raise
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
            return self._run(conn, batches, ids_of)

    @staticmethod
    def _run(conn: sqlite3.Connection, batches: Batches, ids_of: AbstractSet[str]) -> list[int]:
        try:
            ids = run_statements(conn, batches, ids_of)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ids

    async def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file (PASSIVE: never waits for, nor
        blocks, a writer), in a worker thread on a connection of its own."""
        if self._path is not None:
            await anyio.to_thread.run_sync(self._checkpoint)

    def _checkpoint(self) -> None:
        with self._checkpoint_lock:
            if self._path is None:
                return
            if self._checkpointer is None:
                self._checkpointer = _connect(self._path)
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
            self._checkpointer = None
            self._path = None


def run_statements(
    conn: sqlite3.Connection, batches: Batches, ids_of: AbstractSet[str]
) -> list[int]:
    """Run each statement over its rows (inside the caller's transaction); the ids of the
    rows the statements in `ids_of` inserted, in order. Inside one write transaction the
    inserts of one statement into an AUTOINCREMENT table take consecutive ids, the last of
    which is `last_insert_rowid()`."""
    ids: list[int] = []
    for sql, rows in batches:
        if not rows:
            continue
        if len(rows) == 1:  # one call settling alone: no executemany machinery
            cursor = conn.execute(sql, rows[0])
            if sql in ids_of and cursor.lastrowid is not None:
                ids.append(cursor.lastrowid)
            continue
        conn.executemany(sql, rows)
        if sql in ids_of:
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            ids.extend(range(last - len(rows) + 1, last + 1))
    return ids
