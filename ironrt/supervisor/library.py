"""Records of library-mode agents: `ironrt.protect` scopes of other processes, shown by the
daemon and never supervised by it.

Those processes write their rows (kind "library") whenever they like, so the daemon keeps
none in memory: each listing reads them fresh from the database (one query on a partial
index, through a read-only connection of its own), and a scope opened while the daemon
runs shows at once. The daemon writes such a row only to record that its process is gone
while the row still says "running" (killed before its scope closed), telling by pid and
start time as for its own agents. It never
starts, restarts, signals, stops or updates one, and has no process metrics or logs of
one: those operations answer 409. It removes an ended one (`ironrt rm`), as it does its
own ended agents: a record that says "stopped" or "failed" is ended for good (a scope
never reopens; the next one gets a new id), so no process can still be writing it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import anyio
import psutil

from ironrt.errors import AgentNotFound, Conflict
from ironrt.protocol import Agent, AgentStatus, Metrics
from ironrt.store import agents as agent_store
from ironrt.store.agents import StoredAgent
from ironrt.store.db import Database
from ironrt.supervisor import process
from ironrt.supervisor.agents import resolve
from ironrt.supervisor.metrics import budget_use

#: Why the daemon refuses to act on a library record.
NOT_SUPERVISED = "a library-mode agent: it ends with its process"
#: How often `wait` reads a library record again: another process ends it, unannounced.
WAIT_POLL_S = 0.2


def alive(stored: StoredAgent) -> bool:
    """The process that wrote the record still runs (pid and start time, when recorded)."""
    pid = stored.record.pid
    if pid is None:
        return False
    if stored.pid_started is None:
        return psutil.pid_exists(pid)
    return process.is_same_process(pid, stored.pid_started)


_readers: dict[Path, agent_store.LibraryReader] = {}


def _stored(db: Database) -> list[StoredAgent]:
    """The library rows as they are on disk now, read without queueing behind the daemon's
    own writes (see `LibraryReader`)."""
    assert db.path is not None
    reader = _readers.get(db.path)
    if reader is None:
        reader = _readers[db.path] = agent_store.LibraryReader(db.path)
    return reader.load()


async def records(db: Database) -> list[Agent]:
    """Every library record as it is on disk now. One still live whose process is gone is
    first marked `stopped` and `lost` (on disk too): its scope never got to close."""
    found = []
    rows = _stored(db) if db.path is not None else await agent_store.load_all(db, "library")
    for stored in rows:
        r = stored.record
        if r.status.live and not alive(stored):
            r.ended_at = await agent_store.mark_library_lost(db, r.id)
            r.status, r.lost = AgentStatus.STOPPED, True
        found.append(r)
    return found


async def named(db: Database, ref: str, missing: AgentNotFound) -> Agent:
    """The library record `ref` names (id, name or id prefix, as for any agent); `missing`
    is raised if there is none (the ref names no agent at all)."""
    listed = await records(db)
    try:
        agent_id = resolve(ref, ((r.id, r.name, r.status.live) for r in listed))
    except AgentNotFound:
        raise missing from None
    return next(r for r in listed if r.id == agent_id)


def conflict(r: Agent) -> Conflict:
    return Conflict(f"agent {r.id} ('{r.name}') is {NOT_SUPERVISED}")


def no_process(what: str) -> Callable[[Agent], Conflict]:
    """The refusal of a call about the process of an agent (`what`: its metrics, logs)."""

    def refuse(r: Agent) -> Conflict:
        return Conflict(
            f"agent {r.id} ('{r.name}') is a library-mode agent: library-mode agents have "
            f"no process {what} under the daemon (its spend: `ironrt usage`, its calls: "
            "`ironrt traces`)"
        )

    return refuse


def removable(r: Agent) -> Agent:
    """`r`, if it may be removed: ended. A running scope's record is its process's."""
    if r.status.live:
        raise conflict(r)
    return r


async def wait(db: Database, r: Agent, missing: AgentNotFound, timeout: float) -> Agent:
    """The record once it has ended (its scope closed, or its process died), or as it is
    after `timeout`. Polled: the process that ends it tells the daemon nothing."""
    with anyio.move_on_after(timeout):
        while r.status.live:
            await anyio.sleep(WAIT_POLL_S)
            r = await named(db, r.id, missing)
    return r


def metrics(r: Agent) -> Metrics:
    """What the record says (the daemon samples no process it did not start)."""
    budget = r.budget_usd
    remaining, used = budget_use(budget, r.spent_usd)
    return Metrics(
        id=r.id,
        status=r.status,
        pid=r.pid,
        exit_code=r.exit_code,
        cpu_percent=0.0,
        rss_bytes=0,
        num_processes=0,
        uptime_s=_uptime(r),
        restarts=0,
        llm_calls=0,
        input_tokens=0,
        output_tokens=0,
        spent_usd=round(r.spent_usd, 9),
        budget_usd=budget,
        budget_remaining_usd=remaining,
        budget_used_percent=used,
        pii_findings=0,
        errors=0,
    )


def _uptime(r: Agent) -> float:
    if not r.status.live or not r.started_at:
        return 0.0
    try:
        started = dt.datetime.fromisoformat(r.started_at.replace("Z", "+00:00"))
    except ValueError:  # written by another process: a bad stamp must not fail a listing
        return 0.0
    return round(max((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 0.0), 3)
