"""Typed queries for the `agents` table.

The supervisor keeps every agent in memory and writes through to this table on each
state change, so `ironrt ps` never waits on the disk and a restarted daemon finds exactly
what the last one knew.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import msgspec

from ironrt.protocol import Agent, AgentStatus
from ironrt.store.db import Database

_COLUMNS = (
    "id, name, status, pid, pid_started, exit_code, signal, command, cwd, env, restart, "
    "max_restarts, restarts, budget_usd, spent_usd, on_budget, pii, rpm, tpm, "
    "allow_unmetered, token_hash, created_at, started_at, ended_at, error, project, stop_reason, "
    "min_uptime_s, unstable_restarts, lost, log_max_bytes, log_keep, spec_digest, "
    "max_memory_bytes, max_open_files, max_cpu_seconds, env_files"
)
#: `max_restarts` is NOT NULL since schema v1: "unlimited" (null in the API) is stored as -1.
_UNLIMITED = -1


@dataclass(slots=True)
class StoredAgent:
    """An agent's public record plus what only the daemon may know about it."""

    record: Agent
    env: dict[str, str]
    pid_started: float | None
    token_hash: str | None


def _params(agent: StoredAgent) -> tuple[object, ...]:
    r = agent.record
    return (
        r.id,
        r.name,
        r.status.value,
        r.pid,
        agent.pid_started,
        r.exit_code,
        r.signal,
        msgspec.json.encode(r.command).decode(),
        r.cwd,
        msgspec.json.encode(agent.env).decode(),
        r.restart,
        _UNLIMITED if r.max_restarts is None else r.max_restarts,
        r.restarts,
        r.budget_usd,
        r.spent_usd,
        r.on_budget,
        r.pii,
        r.rpm,
        r.tpm,
        int(r.allow_unmetered),
        agent.token_hash,
        r.created_at,
        r.started_at,
        r.ended_at,
        r.error,
        r.project,
        r.stop_reason,
        r.min_uptime_s,
        r.unstable_restarts,
        int(r.lost),
        r.log_max_bytes,
        r.log_keep,
        r.spec_digest,
        r.max_memory_bytes,
        r.max_open_files,
        r.max_cpu_seconds,
        msgspec.json.encode(r.env_files).decode(),
    )


_NAMES = [c.strip() for c in _COLUMNS.split(",")]
#: Insert, or update every column but the spend: `spent_usd` is written only by
#: `ironrt.store.books`, in order with the traces it sums (a lifecycle save holding an older
#: figure must never overwrite it).
_SAVE_SQL = (
    f"INSERT INTO agents ({_COLUMNS}) VALUES ({', '.join('?' * len(_NAMES))}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _NAMES if c not in ("id", "spent_usd"))
)


def save_statement(agent: StoredAgent) -> tuple[str, tuple[object, ...]]:
    return _SAVE_SQL, _params(agent)


async def save(db: Database, agent: StoredAgent) -> None:
    sql, params = save_statement(agent)
    await db.execute(sql, params)


async def delete(db: Database, agent_id: str) -> None:
    await db.execute("DELETE FROM agents WHERE id = ?", (agent_id,))


def _from_row(row: sqlite3.Row) -> StoredAgent:
    record = Agent(
        id=row["id"],
        name=row["name"],
        pid=row["pid"],
        status=AgentStatus(row["status"]),
        exit_code=row["exit_code"],
        signal=row["signal"],
        command=msgspec.json.decode(row["command"], type=list[str]),
        cwd=row["cwd"],
        restart=row["restart"],
        restarts=row["restarts"],
        max_restarts=None if row["max_restarts"] == _UNLIMITED else row["max_restarts"],
        budget_usd=row["budget_usd"],
        spent_usd=row["spent_usd"],
        on_budget=row["on_budget"],
        pii=row["pii"],
        rpm=row["rpm"],
        tpm=row["tpm"],
        allow_unmetered=bool(row["allow_unmetered"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        error=row["error"],
        project=row["project"],
        stop_reason=row["stop_reason"],
        min_uptime_s=row["min_uptime_s"],
        unstable_restarts=row["unstable_restarts"],
        lost=bool(row["lost"]),
        log_max_bytes=row["log_max_bytes"],
        log_keep=row["log_keep"],
        spec_digest=row["spec_digest"],
        max_memory_bytes=row["max_memory_bytes"],
        max_open_files=row["max_open_files"],
        max_cpu_seconds=row["max_cpu_seconds"],
        env_files=msgspec.json.decode(row["env_files"], type=list[str]),
    )
    env = msgspec.json.decode(row["env"], type=dict[str, str])
    return StoredAgent(record, env, row["pid_started"], row["token_hash"])


async def load_all(db: Database) -> list[StoredAgent]:
    rows = await db.fetchall(f"SELECT {_COLUMNS} FROM agents ORDER BY created_at, id")
    return [_from_row(r) for r in rows]
