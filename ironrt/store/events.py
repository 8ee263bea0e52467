"""Typed queries for the `events` table (the durable side of the event bus).

A row keeps the event's id, time, kind and agent in their own columns and the rest of its
fields (the kind's own, the agent's name and project) as JSON in `data`. Rows are read
back into the protocol's tagged union (`ironrt.protocol.events.from_row`), rows written
before events were typed included.
"""

from __future__ import annotations

import sqlite3

import msgspec

from ironrt.protocol.events import AnyEvent, Event, event_fields, from_row
from ironrt.store.db import Database

INSERT_SQL = "INSERT INTO events(ts, kind, agent_id, data) VALUES(?, ?, ?, ?)"
#: The statements whose row ids the bus reads back (`Database.write_many`).
INSERTS = frozenset({INSERT_SQL})


def row(event: Event) -> tuple[str, str, str | None, str]:
    """The values of `INSERT_SQL` for `event`."""
    data = msgspec.json.encode(event_fields(event)).decode()
    return (event.ts, event.kind, event.agent_id, data)


async def insert(db: Database, event: Event) -> int:
    """Store `event` (its `ts`, `kind`, `agent_id` and fields); returns its id."""
    data = msgspec.json.encode(event_fields(event)).decode()
    return await db.execute(
        "INSERT INTO events(ts, kind, agent_id, data) VALUES(?, ?, ?, ?)",
        (event.ts, event.kind, event.agent_id, data),
    )


async def agent_identity(db: Database, agent_id: str) -> tuple[str, str | None] | None:
    """An agent's name and project as its record holds them (None: no such record). Read
    while events are being published: it never waits for the calls' books and events."""
    sql = "SELECT name, project FROM agents WHERE id = ?"
    rows = await db.fetchall(sql, (agent_id,), settled=False)
    return (rows[0]["name"], rows[0]["project"]) if rows else None


def _where(
    since: int, agent_id: str | None, kinds: list[str] | None, project: str | None
) -> tuple[str, list[object]]:
    where = ["id > ?"]
    params: list[object] = [since]
    if agent_id is not None:
        where.append("agent_id = ?")
        params.append(agent_id)
    if kinds:
        where.append(f"kind IN ({', '.join('?' * len(kinds))})")
        params.extend(kinds)
    if project is not None:
        where.append("json_extract(data, '$.project') = ?")
        params.append(project)
    return " AND ".join(where), params


def _decode(rows: list[sqlite3.Row]) -> list[AnyEvent]:
    found = []
    for r in rows:
        event = from_row(r["kind"], r["id"], r["ts"], r["agent_id"], msgspec.json.decode(r["data"]))
        if event is not None:
            found.append(event)
    return found


async def query(
    db: Database,
    *,
    agent_id: str | None = None,
    since: int = 0,
    limit: int = 100,
    kinds: list[str] | None = None,
    project: str | None = None,
) -> list[AnyEvent]:
    """The newest `limit` events after id `since`, returned oldest first (as a log reads)."""
    where, params = _where(since, agent_id, kinds, project)
    sql = f"SELECT id, ts, kind, agent_id, data FROM events WHERE {where} ORDER BY id DESC LIMIT ?"
    rows = await db.fetchall(sql, [*params, limit])
    return _decode(list(reversed(rows)))


async def after(
    db: Database,
    *,
    since: int,
    limit: int,
    agent_id: str | None = None,
    kinds: list[str] | None = None,
    project: str | None = None,
) -> tuple[list[AnyEvent], int, bool]:
    """The oldest `limit` events after id `since`, the id of the last row read and whether
    the page was full: a follower reads a gap page by page, from where it stopped, so it
    misses none."""
    where, params = _where(since, agent_id, kinds, project)
    sql = f"SELECT id, ts, kind, agent_id, data FROM events WHERE {where} ORDER BY id LIMIT ?"
    rows = await db.fetchall(sql, [*params, limit])
    return _decode(rows), (rows[-1]["id"] if rows else since), len(rows) == limit


async def last_id(db: Database) -> int:
    return int(await db.scalar("SELECT COALESCE(MAX(id), 0) FROM events") or 0)
