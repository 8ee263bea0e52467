"""The mechanics of an agent's runs: spawn one, watch it to its end, stop it, record it.

Each agent has exactly one watcher task for as long as it is alive, across restarts; only
that task records how a process ended, so a stop, a crash and a restart can never race
each other into two statuses. Every state change is written to the store before it is
announced, and a new process runs none of the agent's code before its pid is on disk
(its gate, see `process`), so a daemon killed at any moment knows every process it
started. The callers (the supervisor's operations, recovery) hold the agent's lock.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ironrt.errors import StartFailed
from ironrt.events import EventBus, utcnow
from ironrt.governance.agent import AgentGovernance
from ironrt.governance.ledger import Ledger
from ironrt.governance.tokens import new_token, token_hash
from ironrt.protocol import AgentStatus, StopReason
from ironrt.protocol.events import (
    AgentExited,
    AgentFailed,
    AgentForceKilled,
    AgentKilled,
    AgentRestarting,
    AgentStopped,
)
from ironrt.store import agents as agent_store
from ironrt.store.db import Database
from ironrt.supervisor import process, states
from ironrt.supervisor.logrelay_client import LogRelay
from ironrt.supervisor.managed import Managed
from ironrt.supervisor.restart import decide
from ironrt.supervisor.spawning import spawn_run

log = logging.getLogger("ironrt.supervisor")
S = AgentStatus
STARTSECS = 1.0  # a process that lives this long counts as started (supervisord's rule)
#: Longest an ended agent's exit is held for the relay to write its last output (seconds).
LOG_FLUSH_WAIT = 5.0


class Lifecycle:
    def __init__(
        self,
        *,
        logs_dir: Path,
        db: Database,
        bus: EventBus,
        ledger: Ledger,
        logs: LogRelay,
        router_url: str,
        restart_backoff: float,
    ) -> None:
        self.logs_dir = logs_dir
        self.db = db
        self.bus = bus
        self.ledger = ledger
        self.logs = logs
        self.router_url = router_url
        self.restart_backoff = restart_backoff
        #: SHA-256 of each live agent's IC_TOKEN -> its governance (the router's lookup).
        #: The one place a token's liveness is kept: in this map, live; revoked, removed.
        #: (`StoredAgent.token_hash` names the current run's token, so that a restarted
        #: daemon can put an agent it reattaches back in; it says nothing of liveness.)
        self.by_token: dict[str, AgentGovernance] = {}
        self.tg: TaskGroup | None = None

    async def spawn(self, m: Managed, *, restart: bool = False) -> None:
        """Start one run: the process waits at its gate until its record (pid, start time,
        token hash) is on disk, in one write. A `restart` is counted in the same step the
        new pid is set, so no reader sees the count of a run whose pid is not there yet."""
        r = m.record
        token = new_token()
        spawned = await spawn_run(self.logs, self.logs_dir, r, m.stored.env, token, self.router_url)
        old_hash = m.stored.token_hash
        previous = (r.pid, m.stored.pid_started, r.status, r.started_at, r.ended_at, r.restarts)
        r.pid, m.stored.pid_started = spawned.pid, spawned.started
        r.restarts += 1 if restart else 0
        m.gov.pid = spawned.pid
        r.started_at, r.ended_at = utcnow(), None
        m.stored.token_hash = token_hash(token)
        states.check(r.status, S.STARTING)
        r.status = S.STARTING
        r.stop_reason = None
        try:
            await agent_store.save(self.db, m.row())
        except BaseException as exc:
            # Not on disk, so never run: the gate closes and the shell exits unexecuted.
            process.close_gate(spawned)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(spawned.popen.wait if spawned.popen else int)
            r.pid, m.stored.pid_started, r.status, r.started_at, r.ended_at, r.restarts = previous
            m.stored.token_hash = old_hash
            if isinstance(exc, sqlite3.Error):
                raise StartFailed(f"cannot record the new process: {exc}") from exc
            raise
        process.open_gate(spawned)
        if old_hash:
            self.by_token.pop(old_hash, None)
        self.by_token[m.stored.token_hash] = m.gov
        m.popen = spawned.popen
        m.restart_pending = False
        m.started_mono = time.monotonic()
        m.stop_requested = False
        m.over_memory = False
        self.notify(m)

    def watch(self, m: Managed) -> None:
        assert self.tg is not None
        self.tg.start_soon(self._watcher, m, name=f"watch {m.record.id}")

    async def _watcher(self, m: Managed) -> None:
        """Follow one agent through its exits and restarts until it ends for good. Nothing
        one agent does may end the daemon: an error here is logged, never raised."""
        try:
            while await self._follow_run(m):
                pass
        except Exception:
            log.exception("supervising agent %s failed; it is left as it is", m.record.id)

    async def _follow_run(self, m: Managed) -> bool:
        """Wait for one run to end and record how; True if a new run was started."""
        r = m.record
        assert r.pid is not None
        pid, started, popen = r.pid, m.stored.pid_started, m.popen
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._promote_after_startsecs, m, pid)
            await process.wait_exit(pid, started, popen)
            tg.cancel_scope.cancel()
        code, sig = process.exit_status(popen)
        uptime = time.time() - started if started is not None else None
        # Whatever the leader left behind (in its group, or escaped with setsid) dies with
        # it (systemd's control-group rule): an agent's tree never outlives the agent.
        leftovers = await anyio.to_thread.run_sync(
            functools.partial(process.tree, pid, None, r.id, born=started)
        )
        if leftovers:
            await process.kill_tree(leftovers, grace=2.0)
        m.popen = None
        over_memory, m.over_memory = m.over_memory, False
        r.exit_code, r.signal = code, sig
        r.ended_at = utcnow()
        self.revoke(m)
        # Its last lines in its log before anyone is told it ended (`stop` returns, a
        # restart begins), bounded: a relay gone or a full disk does not hold the stop.
        if not await self.logs.flushed(r.id, LOG_FLUSH_WAIT):
            log.warning(
                "agent %s: its last output was not all written to its log within %gs of its exit",
                r.id,
                LOG_FLUSH_WAIT,
            )
        self.logs.release(r.id)
        if m.stop_requested:
            # Announced first: `stop` returns once the status is final, and by then the
            # event must be there for whoever reads it next.
            await self.bus.publish(AgentStopped(agent_id=r.id, exit_code=code, signal=sig))
            await self.set(m, S.STOPPED)
            return False
        r.stop_reason = None  # it ended by itself, whatever had paused it
        final = S.KILLED if sig is not None else S.EXITED
        decision = decide(r, uptime, self.restart_backoff, forced=over_memory)
        if decision.gave_up:
            r.error = (
                f"ended {r.unstable_restarts + 1} times in a row within {r.min_uptime_s:g}s "
                f"of starting; restart limit ({r.max_restarts}) reached"
                + (" (the last time for exceeding its memory limit)" if over_memory else "")
            )
            final = S.FAILED
        m.restart_pending = decision.restart
        # Announced before the status (as a stop is): whoever sees the status final finds
        # the events that explain it.
        why = "max_memory" if over_memory else None
        ended = AgentKilled if sig is not None else AgentExited
        await self.bus.publish(ended(agent_id=r.id, exit_code=code, signal=sig, reason=why))
        if decision.gave_up:
            await self.bus.publish(AgentFailed(agent_id=r.id, reason=r.error or ""))
        if m.stop_requested:
            # A stop came while this run's end was being announced: it ended by itself,
            # and now it is stopped (not restarted, and not left "exited" under a stop).
            m.restart_pending = False
            await self.bus.publish(AgentStopped(agent_id=r.id, exit_code=code, signal=sig))
            await self.set(m, S.STOPPED)
            return False
        await self.set(m, final)
        if not decision.restart:
            return False
        await self.bus.publish(
            AgentRestarting(
                agent_id=r.id,
                attempt=r.restarts + 1,
                unstable=r.unstable_restarts,
                delay_s=decision.delay_s,
                reason=why,
            )
        )
        with anyio.move_on_after(decision.delay_s):
            await m.wake.wait()
        async with m.lock:
            if not m.restart_pending or m.removed:
                return False  # an operation took it over (stop, restart, remove)
            try:
                await self.spawn(m, restart=True)
            except StartFailed as exc:
                m.restart_pending = False
                r.error = exc.message
                await self.set(m, S.FAILED)
                await self.bus.publish(AgentFailed(agent_id=r.id, reason=exc.message))
                return False
        return True

    async def _promote_after_startsecs(self, m: Managed, pid: int) -> None:
        remaining = STARTSECS - (time.monotonic() - m.started_mono)
        if remaining > 0:
            await anyio.sleep(remaining)
        if m.record.pid == pid and m.record.status is S.STARTING:
            await self.set(m, S.RUNNING)

    async def stop(self, m: Managed, timeout: float, reason: StopReason = "user") -> None:
        """Stop the agent and wait for its final status (the caller holds its lock)."""
        m.stop_requested = True
        m.wake.set()
        r = m.record
        if r.status.live or m.restart_pending:
            r.stop_reason = reason
        self.ledger.cancel(r.id)  # calls it had waiting for budget are answered now
        if r.status in states.ENDED:
            if m.restart_pending:  # waiting out its backoff: the stop takes over
                m.restart_pending = False
                await self.bus.publish(AgentStopped(agent_id=r.id, exit_code=r.exit_code))
                await self.set(m, S.STOPPED)
            return
        if r.status is not S.STOPPING:
            await self.set(m, S.STOPPING)
        await self.kill(m, timeout)

    async def kill(self, m: Managed, timeout: float) -> None:
        """End the agent's whole tree and wait (bounded) for the watcher's final status."""
        r = m.record
        assert r.pid is not None
        procs = await anyio.to_thread.run_sync(process.tree, r.pid, m.stored.pid_started, r.id)
        forced = await process.kill_tree(procs, grace=timeout)
        if forced:
            await self.bus.publish(AgentForceKilled(agent_id=r.id, grace_s=timeout))
        with anyio.move_on_after(10):
            while r.status is S.STOPPING:
                await m.changed.wait()

    def revoke(self, m: Managed) -> None:
        # Calls it left waiting for budget must never be forwarded for a process that is gone.
        self.ledger.cancel(m.record.id)
        if m.stored.token_hash:
            self.by_token.pop(m.stored.token_hash, None)

    async def set(self, m: Managed, status: AgentStatus) -> None:
        try:
            states.check(m.record.status, status)
        except states.IllegalTransition as exc:
            # What the process did is a fact: record it, and say that it was unexpected.
            log.error("agent %s: %s (recorded as it happened)", m.record.id, exc)
        # Set before the write: decisions taken meanwhile (a budget resume, a promotion to
        # running) see the new status; announced (notify, events) only once it is on disk.
        m.record.status = status
        await self.save(m)
        self.notify(m)

    def notify(self, m: Managed) -> None:
        changed, m.changed = m.changed, anyio.Event()
        changed.set()

    async def save_or_raise(self, m: Managed, **changes: Any) -> None:
        """Write the record, or raise: for changes a person asked for, which are answered
        with 507 (and not made, or undone, in memory) when the disk refuses them.
        `changes`: settings written before they are applied in memory."""
        if m.removed:
            return  # a removed agent must not come back with the next restart
        await agent_store.save(self.db, m.row(**changes))

    async def save(self, m: Managed) -> None:
        """Write the record after a fact (the process started, exited): memory must follow
        the process whatever the disk says, so a failed write is logged, not raised."""
        try:
            await self.save_or_raise(m)
        except (sqlite3.Error, OverflowError, OSError) as exc:
            # Disk full: the state stays right in memory and is written with the next change.
            log.error("could not save agent %s: %s", m.record.id, exc)
