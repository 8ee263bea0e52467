"""Typed queries for the `agents` table.

The supervisor keeps every agent it started in memory and writes through to this table
on each state change, so `ironrt ps` never waits on the disk and a restarted daemon finds
exactly what the last one knew.

Library mode (`ironrt.protect` in an ordinary Python process) records its scopes here too,
as rows of kind "library" written by that process (`library_record`, `save_library_agent`,
`end_library_agent`). The daemon never loads those into its memory: it reads them fresh
for each listing, and writes one only to say that its process is gone (`mark_library_lost`).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import msgspec
import psutil

from ironrt.protocol import Agent, AgentKind, AgentStatus, OnBudget, PiiMode
from ironrt.store.db import Database

_COLUMNS = (
    "id, name, status, pid, pid_started, exit_code, signal, command, cwd, env, restart, "
    "max_restarts, restarts, budget_usd, spent_usd, on_budget, pii, rpm, tpm, "
    "allow_unmetered, token_hash, created_at, started_at, ended_at, error, project, stop_reason, "
    "min_uptime_s, unstable_restarts, lost, log_max_bytes, log_keep, spec_digest, "
    "max_memory_bytes, max_open_files, max_cpu_seconds, env_files, kind, pii_types, pii_file"
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
        r.kind,
        None if r.pii_types is None else msgspec.json.encode(r.pii_types).decode(),
        r.pii_file,
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
        kind=row["kind"],
        pii_types=(
            None
            if row["pii_types"] is None
            else msgspec.json.decode(row["pii_types"], type=dict[str, PiiMode])
        ),
        pii_file=row["pii_file"],
    )
    env = msgspec.json.decode(row["env"], type=dict[str, str])
    return StoredAgent(record, env, row["pid_started"], row["token_hash"])


async def load_all(db: Database, kind: AgentKind | None = None) -> list[StoredAgent]:
    """Every agent, or those of one kind (the daemon loads only its own, "process")."""
    if kind is None:
        rows = await db.fetchall(f"SELECT {_COLUMNS} FROM agents ORDER BY created_at, id")
    else:
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM agents WHERE kind = ? ORDER BY created_at, id", (kind,)
        )
    return [_from_row(r) for r in rows]


# ---- library mode ---------------------------------------------------------------------------


class LibraryReader:
    """Reads the library records on the caller's thread, through a read-only connection of
    its own. A listing asks for them every time (another process may have written one a
    moment ago); through the daemon's shared connection that read queued behind its writes
    and cost a thread hop (`ironrt ps` went from 0.9 to 9 ms while agents started), while
    one indexed read in WAL mode, which writers never block, takes tens of microseconds."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout=200")

    def load(self) -> list[StoredAgent]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM agents WHERE kind = 'library' ORDER BY created_at, id"
        ).fetchall()
        return [_from_row(r) for r in rows]

    def close(self) -> None:
        self._conn.close()


def new_agent_id() -> str:
    """A fresh agent id (the daemon's agents and library scopes share one id space)."""
    import secrets  # at an agent's creation: off the daemon's start (~5 ms to import)

    return secrets.token_hex(6)


def _utcnow() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def library_record(
    name: str,
    *,
    agent_id: str | None = None,
    pid: int | None = None,
    command: list[str] | None = None,
    cwd: str | None = None,
    budget_usd: float | None = None,
    pii: PiiMode = "detect",
    rpm: int | None = None,
    tpm: int | None = None,
    on_budget: OnBudget = "block",
    project: str | None = None,
) -> StoredAgent:
    """The record of a library scope opening now: kind "library", "running", the pid and
    start time of its process (by default this one; the start time lets a daemon tell
    when that process is gone, even if its pid is reused), its command line and working
    directory for display. No environment and no token: the process keeps its own key,
    and nothing of it is stored."""
    now = _utcnow()
    pid = os.getpid() if pid is None else pid
    record = Agent(
        id=agent_id or new_agent_id(),
        name=name,
        pid=pid,
        status=AgentStatus.RUNNING,
        exit_code=None,
        signal=None,
        command=command if command is not None else (list(sys.argv) or [sys.executable]),
        cwd=os.getcwd() if cwd is None else cwd,
        restart="no",
        restarts=0,
        max_restarts=0,
        budget_usd=budget_usd,
        spent_usd=0.0,
        on_budget=on_budget,
        pii=pii,
        rpm=rpm,
        tpm=tpm,
        allow_unmetered=False,
        created_at=now,
        started_at=now,
        ended_at=None,
        project=project,
        kind="library",
    )
    try:
        started: float | None = psutil.Process(pid).create_time()
    except psutil.Error:
        started = None
    return StoredAgent(record, {}, started, None)


async def save_library_agent(db: Database, agent: StoredAgent) -> None:
    """Write (insert, or update all but the spend) a library scope's record."""
    if agent.record.kind != "library" or agent.env or agent.token_hash:
        raise ValueError("a library record has kind 'library', no environment and no token")
    await save(db, agent)


def end_library_statement(
    agent_id: str,
    *,
    spent_usd: float | None = None,
    status: AgentStatus = AgentStatus.STOPPED,
    error: str | None = None,
) -> tuple[str, tuple[object, ...]]:
    """The scope ended: its final status (`stopped`; `failed` with an `error` if the scope
    ended by an exception, say), `ended_at`, and its final spend when given."""
    return (
        "UPDATE agents SET status = ?, ended_at = ?, error = ?, "
        "spent_usd = COALESCE(?, spent_usd) WHERE id = ? AND kind = 'library'",
        (status.value, _utcnow(), error, spent_usd, agent_id),
    )


async def end_library_agent(
    db: Database,
    agent_id: str,
    *,
    spent_usd: float | None = None,
    status: AgentStatus = AgentStatus.STOPPED,
    error: str | None = None,
) -> None:
    sql, params = end_library_statement(agent_id, spent_usd=spent_usd, status=status, error=error)
    await db.execute(sql, params)


def spend_statement(agent_id: str, spent_usd: float) -> tuple[str, tuple[object, ...]]:
    """An agent's spend of all time (written with the traces it sums, in one transaction)."""
    return "UPDATE agents SET spent_usd = ? WHERE id = ?", (spent_usd, agent_id)


async def mark_library_lost(db: Database, agent_id: str) -> str:
    """A library record still "running" whose process is gone (killed before its scope
    closed): `stopped`, `lost`, ended now (returned). Only if it is still running, so a
    scope that closed meanwhile keeps its own ending."""
    now = _utcnow()
    await db.execute(
        "UPDATE agents SET status = 'stopped', lost = 1, ended_at = ? "
        "WHERE id = ? AND kind = 'library' AND status = 'running'",
        (now, agent_id),
    )
    return now
