"""Opening the database and bringing its schema up to date.

Migrations are numbered SQL files in `migrations/`; `PRAGMA user_version` records the last
one applied. A database made by a newer ironrt is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from collections.abc import Set as AbstractSet
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from ironrt.errors import SchemaTooNew as SchemaTooNew  # defined there, re-exported


def migrations() -> list[tuple[int, str]]:
    folder = resources.files("ironrt.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql"):
            found.append((int(name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class Database:
    """A thin typed wrapper over one aiosqlite connection (SQLite serialises writers anyway)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path | None = None) -> None:
        self.conn = conn
        #: The file, for a second connection (the router's batch writer).
        self.path = path
        # One connection, many tasks: a transaction must not interleave with another's.
        self._tx = anyio.Lock()
        #: Awaited before every read: the books commit behind the answers, and a read
        #: must see every call answered before it (`Books.drain`).
        self.before_read: Callable[[], Awaitable[None]] | None = None

    @classmethod
    async def open(cls, path: Path) -> Database:
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        # One hop to the connection's thread for the four (a hop costs more than a pragma).
        await conn.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;"
        )
        db = cls(conn, path)
        try:
            await db.migrate()
        except BaseException:
            await conn.close()
            raise
        return db

    async def migrate(self) -> int:
        """Apply the migrations the database lacks, all in one transaction: a failure
        leaves it as it was (none of them applied), and the next start tries again.

        One script in one hop to the connection's thread: a new home's ~60 statements
        took ~55 ms as one hop each, the start's largest step after the imports."""
        current = await self.scalar("PRAGMA user_version")
        steps = migrations()
        latest = steps[-1][0] if steps else 0
        if current > latest:
            raise SchemaTooNew(
                f"the database has schema v{current}, this ironrt knows up to v{latest}: "
                "upgrade ironrt or use another IRONRT_HOME"
            )
        pending = [sql for version, sql in steps if version > current]
        if not pending:
            return latest
        script = "\n".join(["BEGIN IMMEDIATE;", *pending, f"PRAGMA user_version={latest};"])
        try:
            await self.conn.executescript(script + "\nCOMMIT;")
        except BaseException:
            if self.conn.in_transaction:
                await self.conn.execute("ROLLBACK")
            raise
        return latest

    async def close(self) -> None:
        await self.conn.close()

    async def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        if self.before_read is not None:
            await self.before_read()
        async with self.conn.execute(sql, tuple(params)) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def fetchall(
        self, sql: str, params: Iterable[Any] = (), *, settled: bool = True
    ) -> list[sqlite3.Row]:
        """`settled=False`: a read that must not wait for the calls settled before it (one
        made while publishing their events, which that wait would be waiting for)."""
        if settled and self.before_read is not None:
            await self.before_read()
        async with self.conn.execute(sql, tuple(params)) as cur:
            rows = await cur.fetchall()
        return list(rows)

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement in autocommit mode; returns lastrowid."""
        async with self._tx, self.conn.execute(sql, tuple(params)) as cur:
            return cur.lastrowid or 0

    async def write_many(
        self,
        batches: list[tuple[str, list[tuple[Any, ...]]]],
        ids_of: AbstractSet[str] = frozenset(),
    ) -> list[int]:
        """Each statement run over many rows, all in one transaction (group commit).
        Returns the row ids the inserts of the statements in `ids_of` made, in order (see
        `writer.run_statements`)."""
        ids: list[int] = []
        async with self._tx:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in batches:
                    if rows:
                        await self.conn.executemany(sql, rows)
                        if sql in ids_of:
                            last = await self.scalar("SELECT last_insert_rowid()")
                            ids.extend(range(int(last) - len(rows) + 1, int(last) + 1))
                await self.conn.execute("COMMIT")
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self.conn.execute("ROLLBACK")
                raise
        return ids

    async def get_meta(self, key: str) -> str | None:
        value = await self.scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        await self.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
