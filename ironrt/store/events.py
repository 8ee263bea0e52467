"""Typed queries for the `events` table (the durable side of the event bus)."""

from __future__ import annotations

import msgspec

from ironrt.protocol import Event
from ironrt.store.db import Database


async def insert(
    db: Database, ts: str, kind: str, agent_id: str | None, data: dict[str, object]
) -> int:
    return await db.execute(
        "INSERT INTO events(ts, kind, agent_id, data) VALUES(?, ?, ?, ?)",
        (ts, kind, agent_id, msgspec.json.encode(data).decode()),
    )


async def query(
    db: Database,
    *,
    agent_id: str | None = None,
    since: int = 0,
    limit: int = 100,
    kinds: list[str] | None = None,
) -> list[Event]:
    where = ["id > ?"]
    params: list[object] = [since]
    if agent_id is not None:
        where.append("agent_id = ?")
        params.append(agent_id)
    if kinds:
        where.append(f"kind IN ({', '.join('?' * len(kinds))})")
        params.extend(kinds)
    # The newest `limit` events, returned oldest first (as a log reads).
    sql = (
        f"SELECT id, ts, kind, agent_id, data FROM events WHERE {' AND '.join(where)} "
        "ORDER BY id DESC LIMIT ?"
    )
    params.append(limit)
    rows = await db.fetchall(sql, params)
    return [
        Event(
            id=r["id"],
            ts=r["ts"],
            kind=r["kind"],
            agent_id=r["agent_id"],
            data=msgspec.json.decode(r["data"]),
        )
        for r in reversed(rows)
    ]
