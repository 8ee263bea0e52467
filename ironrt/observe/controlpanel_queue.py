"""The Control Panel telemetry queue: a bounded FIFO on disk that outlives the daemon.

Its own SQLite file (`$IRONRT_HOME/telemetry.sqlite`), not a table of ironrt.db: the
queue is written in bursts and emptied in batches, never joined with the daemon's state,
and deleting the file loses nothing but unsent telemetry.

`seq` is an AUTOINCREMENT key: SQLite never hands the same number out twice in a file,
also after the rows are deleted and across restarts, so the receiver can dedupe by it.
An item leaves the queue only when the Control Panel acknowledged it (`ack`); a daemon
stopped or killed before that sends it again after its restart.

The calls are blocking sqlite3, made in a worker thread (`anyio.to_thread`) one at a time:
each is one short transaction on a small file, and the event loop never waits on a disk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Literal

import anyio

__all__ = ["Item", "ItemType", "TelemetryQueue"]

log = logging.getLogger("ironrt.telemetry")

ItemType = Literal["event", "call"]
#: One queued item: (seq, type, its JSON).
Item = tuple[int, str, bytes]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class TelemetryQueue:
    def __init__(self, path: Path, max_items: int) -> None:
        self.path = path
        self.max_items = max_items
        #: Items dropped (the oldest) because the queue was full, since this daemon started.
        self.dropped = 0
        self._dropping = False
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.daemon_id = ""

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open)

    def _open(self) -> None:
        fresh = not self.path.exists()
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if fresh:
            os.chmod(self.path, 0o600)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key = 'daemon_id'").fetchone()
        if row is None:
            self.daemon_id = uuid.uuid4().hex
            db.execute("INSERT INTO meta VALUES ('daemon_id', ?)", (self.daemon_id,))
        else:
            self.daemon_id = str(row[0])
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the telemetry queue is not open")
        return self._db

    async def append(self, items: list[tuple[ItemType, bytes]]) -> None:
        """Queue `items` in order; the oldest go beyond `max_items`."""
        if items:
            await anyio.to_thread.run_sync(self._append, items)

    def _append(self, items: list[tuple[ItemType, bytes]]) -> None:
        with self._lock:
            db = self._conn()
            with db:
                db.execute("BEGIN")
                db.executemany("INSERT INTO items (type, data) VALUES (?, ?)", items)
                count = int(db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
                excess = count - self.max_items
                if excess > 0:
                    db.execute(
                        "DELETE FROM items WHERE seq IN "
                        "(SELECT seq FROM items ORDER BY seq LIMIT ?)",
                        (excess,),
                    )
        if excess > 0:
            self.dropped += excess
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "the telemetry queue is full (%d items): the oldest are dropped until "
                    "the Control Panel takes them",
                    self.max_items,
                )
        else:
            self._dropping = False

    async def peek(self, limit: int) -> list[Item]:
        """The oldest `limit` items, left in the queue."""
        return await anyio.to_thread.run_sync(self._peek, limit)

    def _peek(self, limit: int) -> list[Item]:
        with self._lock:
            rows = self._conn().execute(
                "SELECT seq, type, data FROM items ORDER BY seq LIMIT ?", (limit,)
            )
            return [(int(seq), str(kind), bytes(data)) for seq, kind, data in rows]

    async def ack(self, last_seq: int) -> None:
        """Forget every item up to `last_seq`: the Control Panel has them."""
        await anyio.to_thread.run_sync(self._ack, last_seq)

    def _ack(self, last_seq: int) -> None:
        with self._lock:
            self._conn().execute("DELETE FROM items WHERE seq <= ?", (last_seq,))

    async def count(self) -> int:
        return await anyio.to_thread.run_sync(self._count)

    def _count(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM items").fetchone()[0])
