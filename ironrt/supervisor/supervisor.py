"""The supervisor: owns every agent's lifecycle from spawn to its final status.

Each agent has exactly one watcher task (in the supervisor's task group) for as long as it
is alive, across restarts; only that task records how a process ended, so a stop, a crash
and a restart can never race each other into two statuses. Every state change is written
to the store before it is announced, so a daemon killed at any moment restarts knowing
what the last one knew, and reattaches to the agents that outlived it.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import time
from pathlib import Path

import anyio
import msgspec
from anyio.abc import TaskGroup

from ironrt.config import Settings
from ironrt.errors import Conflict, StartFailed
from ironrt.events import EventBus, utcnow
from ironrt.ledger import Ledger, Scope, scope_key
from ironrt.protocol import (
    Agent,
    AgentStatus,
    Metrics,
    StartRequest,
    StopReason,
    UpdateRequest,
)
from ironrt.router.governance import AgentGovernance
from ironrt.store import agents as agent_store
from ironrt.store import scopes as scope_store
from ironrt.store.agents import StoredAgent
from ironrt.store.books import Books
from ironrt.store.db import Database
from ironrt.supervisor import logfiles, process, states
from ironrt.supervisor.agents import new_agent_id, resolve, unique_name
from ironrt.supervisor.budgets import BudgetPauses, resolve_scope, sorted_scopes
from ironrt.supervisor.commands import default_name, resolve_command
from ironrt.supervisor.environment import agent_environment, new_token, scrub, token_hash
from ironrt.supervisor.managed import Managed
from ironrt.supervisor.metrics import metrics_for
from ironrt.supervisor.restart import backoff, failed, should_restart
from ironrt.supervisor.sampler import TreeSample, TreeSampler

log = logging.getLogger("ironrt.supervisor")
S = AgentStatus
STARTSECS = 1.0  # a process that lives this long counts as started (supervisord's rule)


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: EventBus,
        router_url: str,
        ledger: Ledger | None = None,
        books: Books | None = None,
        *,
        restart_backoff: float = 0.5,
        sample_interval: float = 1.0,
    ) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.router_url = router_url
        self.ledger = ledger or Ledger()
        self.books = books or Books(db)
        self.restart_backoff = restart_backoff
        self.sample_interval = sample_interval
        self.agents: dict[str, Managed] = {}
        self._pauses = BudgetPauses(self.ledger, bus, self.agents, self._set)
        self.by_token: dict[str, AgentGovernance] = {}
        self._tg: TaskGroup | None = None
        self._sampler = TreeSampler()

    # ---- lookup -------------------------------------------------------------------------
    def find(self, ref: str) -> Managed:
        agent_id = resolve(
            ref, ((a.record.id, a.record.name, a.record.status.live) for a in self.agents.values())
        )
        return self.agents[agent_id]

    def snapshot(self, m: Managed) -> Agent:
        m.record.spent_usd = round(m.gov.spent_usd, 9)
        own = m.gov.own
        if own is not None:
            m.record.budget_usd, m.record.rpm, m.record.tpm = own.budget_usd, own.rpm, own.tpm
        return m.record

    def scopes_for(self, r: Agent) -> tuple[Scope, ...]:
        """The scopes an agent's calls must fit: its own, its project's, `global`."""
        ledger = self.ledger
        own = ledger.scope(scope_key("agent", r.id))
        if r.project:
            return (own, ledger.scope(scope_key("project", r.project)), ledger.scope("global"))
        return (own, ledger.scope("global"))

    def agents_list(self) -> list[Agent]:
        return [self.snapshot(m) for m in self.agents.values()]

    def governance_for_token(self, hashed: str) -> AgentGovernance | None:
        """The agent a token hash belongs to. Lookup is by SHA-256 of the token, never the
        token: whatever a timing side channel of the lookup could reveal is about a hash,
        from which no token can be recovered (the constant-time comparison that matters)."""
        return self.by_token.get(hashed)

    # ---- life of the service ----------------------------------------------------------
    async def run(self, tg: TaskGroup, governance: dict[str, AgentGovernance]) -> None:
        """Load the agents the store knows, reattach to live ones, and start background work."""
        self._tg = tg
        for stored in await agent_store.load_all(self.db):
            gov = governance.get(stored.record.id) or AgentGovernance(stored.record.id)
            fresh = scope_key("agent", stored.record.id) not in self.ledger.scopes
            gov.scopes = self.scopes_for(stored.record)
            if fresh:  # no row yet (a v1 database migrates one): limits from the record
                self._limit_own(gov, stored.record)
            self._apply_settings(gov, stored.record)
            gov.spent_usd = stored.record.spent_usd
            m = Managed(stored, gov)
            self.agents[stored.record.id] = m
            if stored.record.status.live:
                await self._reattach(m)
        tg.start_soon(self._sample_loop)
        tg.start_soon(self._pauses.run)

    async def _reattach(self, m: Managed) -> None:
        r = m.record
        if r.pid is not None and process.is_same_process(r.pid, m.stored.pid_started):
            if m.stored.token_hash:
                self.by_token[m.stored.token_hash] = m.gov
            m.started_mono = time.monotonic() - STARTSECS
            if r.status is S.STARTING:
                await self._set(m, S.RUNNING)
            if r.status is S.PAUSED:
                # The call that paused it died with the last daemon: let it run again.
                process.signal_tree(process.tree(r.pid, m.stored.pid_started), signal.SIGCONT)
                r.stop_reason = None
                await self._set(m, S.RUNNING)
            await self.bus.publish("AgentReattached", r.id, pid=r.pid)
            self._watch(m)
            return
        # It ended while no daemon watched it: its exit code is lost with its parent.
        was_stopping = r.status is S.STOPPING
        r.ended_at = utcnow()
        m.stored.token_hash = None
        m.gov.active = False
        await self._set(m, S.STOPPED if was_stopping else S.EXITED)
        await self.bus.publish("AgentExited", r.id, exit_code=None, while_daemon_down=True)

    async def shutdown(self, *, keep_agents: bool, timeout: float = 10.0) -> None:
        if keep_agents:
            return
        async with anyio.create_task_group() as tg:
            for m in list(self.agents.values()):
                if m.record.status.live:
                    tg.start_soon(self._stop, m, timeout, "user")

    # ---- operations ---------------------------------------------------------------------
    async def start(self, req: StartRequest) -> Agent:
        command = resolve_command(req)
        live_names = {a.record.name for a in self.agents.values() if a.record.status.live}
        if req.name is not None:
            if req.name in live_names:
                raise Conflict(f"an agent named '{req.name}' is already running", field="name")
            name = req.name
        else:
            name = unique_name(default_name(req.command), live_names)
        agent_id = new_agent_id()
        record = Agent(
            id=agent_id,
            name=name,
            pid=None,
            status=S.STARTING,
            exit_code=None,
            signal=None,
            command=command,
            cwd=req.cwd,
            restart=req.restart,
            restarts=0,
            max_restarts=req.max_restarts,
            budget_usd=req.budget_usd,
            spent_usd=0.0,
            on_budget=req.on_budget,
            pii=req.pii,
            rpm=req.rpm,
            tpm=req.tpm,
            allow_unmetered=req.allow_unmetered,
            created_at=utcnow(),
            started_at=None,
            ended_at=None,
            project=req.project,
        )
        env = scrub(req.env)
        env.update({k: v for k, v in scrub(req.env_overrides).items()})
        m = Managed(StoredAgent(record, env, None, None), AgentGovernance(agent_id))
        m.gov.scopes = self.scopes_for(record)
        own = self._limit_own(m.gov, record)
        self._apply_settings(m.gov, record)
        # Written before the process exists: an agent the store cannot record is never
        # started (a crash would lose it). A full disk fails here, cleanly.
        try:
            await agent_store.save(self.db, m.stored)
            await scope_store.save(self.db, own)
        except BaseException:
            self.ledger.drop(own.key)
            raise
        try:
            await self._spawn(m)
        except StartFailed:
            self.ledger.drop(own.key)
            await agent_store.delete(self.db, agent_id)
            await scope_store.delete(self.db, own.key)
            raise
        self.agents[agent_id] = m
        await self.bus.publish("AgentStarted", agent_id, pid=record.pid, name=name)
        self._watch(m)
        return self.snapshot(m)

    async def stop(self, ref: str, timeout: float, reason: StopReason = "user") -> Agent:
        m = self.find(ref)
        await self._stop(m, timeout, reason)
        return self.snapshot(m)

    async def restart(self, ref: str, timeout: float) -> Agent:
        m = self.find(ref)
        async with m.lock:
            if m.record.status.live:
                await self._stop(m, timeout)
            m.stop_requested = False
            m.wake = anyio.Event()
            m.record.exit_code = m.record.signal = None
            m.record.error = None
            m.record.stop_reason = None
            await self._spawn(m)
            await self.bus.publish("AgentRestarted", m.record.id, pid=m.record.pid, manual=True)
            self._watch(m)
        return self.snapshot(m)

    async def remove(self, ref: str, force: bool, timeout: float) -> Agent:
        m = self.find(ref)
        if m.record.status.live:
            if not force:
                raise Conflict(
                    f"agent {m.record.id} is {m.record.status.value}: stop it first or use force"
                )
            await self._stop(m, timeout)
        self.agents.pop(m.record.id, None)
        await agent_store.delete(self.db, m.record.id)
        own = scope_key("agent", m.record.id)
        self.ledger.drop(own)
        await self.books.delete_scope(own)
        logfiles.remove_logs(logfiles.log_path(self.settings.logs_dir, m.record.id))
        await self.bus.publish("AgentRemoved", m.record.id)
        return self.snapshot(m)

    async def update(self, ref: str, req: UpdateRequest) -> Agent:
        m = self.find(ref)
        r = m.record
        changes: dict[str, object] = {}
        for name in ("budget_usd", "pii", "on_budget", "rpm", "tpm"):
            value = getattr(req, name)
            if value is not msgspec.UNSET:
                setattr(r, name, value)
                changes[name] = value
        self._apply_settings(m.gov, r)
        limits = {k: v for k, v in changes.items() if k in ("budget_usd", "rpm", "tpm")}
        if limits:
            await self.set_limits(m.gov.scopes[0], limits)
        await self._save(m)
        await self.bus.publish("AgentUpdated", r.id, **changes)
        return self.snapshot(m)

    async def wait(self, ref: str, timeout: float) -> Agent:
        m = self.find(ref)
        with anyio.move_on_after(timeout):
            while not self._finished(m):
                await m.changed.wait()
        return self.snapshot(m)

    def metrics(self, ref: str) -> Metrics:
        return self.metrics_of(self.find(ref))

    def all_metrics(self) -> list[Metrics]:
        return [self.metrics_of(m) for m in self.agents.values()]

    def metrics_of(self, m: Managed) -> Metrics:
        r = self.snapshot(m)
        live = r.status.live and r.pid is not None
        uptime = time.monotonic() - m.started_mono if live else 0.0
        return metrics_for(r, m.gov, m.sample if live else None, uptime)

    def log_file(self, ref: str) -> tuple[Managed, Path]:
        m = self.find(ref)
        return m, logfiles.log_path(self.settings.logs_dir, m.record.id)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.agents.values():
            out[m.record.status.value] = out.get(m.record.status.value, 0) + 1
        return out

    # ---- internals ----------------------------------------------------------------------
    def _finished(self, m: Managed) -> bool:
        return m.record.status in states.ENDED and not m.restart_pending

    async def _spawn(self, m: Managed) -> None:
        r = m.record
        token = new_token()
        env = agent_environment(
            m.stored.env,
            agent_id=r.id,
            token=token,
            router_url=self.router_url,
            python_agent=r.command[0].endswith(("python", "python3"))
            or any(part.endswith(".py") for part in r.command[1:2]),
        )
        log = logfiles.log_path(self.settings.logs_dir, r.id)
        fd = logfiles.open_for_child(log)
        try:
            spawned = process.spawn(r.command, cwd=r.cwd, env=env, log_fd=fd)
        except OSError as exc:
            raise StartFailed(
                f"cannot start {r.command[0]}: {exc.strerror or exc}", field="command"
            ) from exc
        finally:
            os.close(fd)
        if m.stored.token_hash:
            self.by_token.pop(m.stored.token_hash, None)
        hashed = token_hash(token)
        m.stored.token_hash = hashed
        m.stored.pid_started = spawned.started
        m.popen = spawned.popen
        m.gov.active = True
        m.restart_pending = False
        self.by_token[hashed] = m.gov
        r.pid = spawned.pid
        r.stop_reason = None
        r.started_at = utcnow()
        r.ended_at = None
        m.started_mono = time.monotonic()
        m.stop_requested = False
        await self._set(m, S.STARTING)

    def _watch(self, m: Managed) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._watcher, m, name=f"watch {m.record.id}")

    async def _watcher(self, m: Managed) -> None:
        """Follow one agent through its exits and restarts until it ends for good."""
        while True:
            r = m.record
            assert r.pid is not None
            pid, started, popen = r.pid, m.stored.pid_started, m.popen
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._promote_after_startsecs, m, pid)
                await process.wait_exit(pid, started, popen)
                tg.cancel_scope.cancel()
            code, sig = process.exit_status(popen)
            # Whatever the leader left behind in its group dies with it (systemd's
            # control-group rule): an agent's tree never outlives the agent.
            leftovers = process.tree(pid, None) if process.group_alive(pid) else []
            if leftovers:
                await process.kill_tree(leftovers, grace=2.0)
            m.popen = None
            r.exit_code, r.signal = code, sig
            r.ended_at = utcnow()
            self._revoke(m)
            if m.stop_requested:
                # Announced first: `stop` returns once the status is final, and by then the
                # event must be there for whoever reads it next.
                await self.bus.publish("AgentStopped", r.id, exit_code=code, signal=sig)
                await self._set(m, S.STOPPED)
                return
            r.stop_reason = None  # it ended by itself, whatever had paused it
            final = S.KILLED if sig is not None else S.EXITED
            m.restart_pending = should_restart(m.record)
            gave_up = (
                not m.restart_pending
                and r.restart != "no"
                and failed(m.record)
                and r.restarts >= r.max_restarts
            )
            if gave_up:
                r.error = f"ended {r.restarts + 1} times; restart limit ({r.max_restarts}) reached"
                final = S.FAILED
            await self._set(m, final)
            await self.bus.publish(
                "AgentKilled" if sig is not None else "AgentExited",
                r.id,
                exit_code=code,
                signal=sig,
            )
            if gave_up:
                await self.bus.publish("AgentFailed", r.id, reason=r.error)
            if not m.restart_pending:
                return
            delay = backoff(self.restart_backoff, r.restarts)
            r.restarts += 1
            await self.bus.publish("AgentRestarting", r.id, attempt=r.restarts, delay_s=delay)
            with anyio.move_on_after(delay):
                await m.wake.wait()
            if m.stop_requested:
                m.restart_pending = False
                if r.status is not S.STOPPED:
                    await self._set(m, S.STOPPED)
                return
            try:
                await self._spawn(m)
            except StartFailed as exc:
                m.restart_pending = False
                r.error = exc.message
                await self._set(m, S.FAILED)
                await self.bus.publish("AgentFailed", r.id, reason=exc.message)
                return

    async def _promote_after_startsecs(self, m: Managed, pid: int) -> None:
        remaining = STARTSECS - (time.monotonic() - m.started_mono)
        if remaining > 0:
            await anyio.sleep(remaining)
        if m.record.pid == pid and m.record.status is S.STARTING:
            await self._set(m, S.RUNNING)

    async def _stop(self, m: Managed, timeout: float, reason: StopReason = "user") -> None:
        m.stop_requested = True
        m.wake.set()
        r = m.record
        if r.status.live or m.restart_pending:
            r.stop_reason = reason
        self.ledger.cancel(r.id)  # calls it had waiting for budget are answered now
        if r.status in states.ENDED:
            if m.restart_pending:  # in restart backoff: the watcher records the stop
                with anyio.move_on_after(10):
                    while m.restart_pending:
                        await m.changed.wait()
            return
        if r.status is S.STARTING and (
            r.pid is None
            or (m.popen is None and not process.is_same_process(r.pid, m.stored.pid_started))
        ):
            await self._set(m, S.STOPPED)
            return
        if r.status is not S.STOPPING:
            await self._set(m, S.STOPPING)
        assert r.pid is not None
        procs = process.tree(r.pid, m.stored.pid_started)
        forced = await process.kill_tree(procs, grace=timeout)
        if forced:
            await self.bus.publish("AgentForceKilled", r.id, grace_s=timeout)
        # The watcher records the final status; wait for it (bounded: the tree is gone).
        with anyio.move_on_after(10):
            while r.status is S.STOPPING:
                await m.changed.wait()

    def _revoke(self, m: Managed) -> None:
        # Calls it left waiting for budget must never be forwarded for a process that is gone.
        self.ledger.cancel(m.record.id)
        if m.stored.token_hash:
            self.by_token.pop(m.stored.token_hash, None)
        m.stored.token_hash = None
        m.gov.active = False

    def _apply_settings(self, gov: AgentGovernance, r: Agent) -> None:
        gov.on_budget = r.on_budget
        gov.pii = r.pii
        gov.allow_unmetered = r.allow_unmetered

    def _limit_own(self, gov: AgentGovernance, r: Agent) -> Scope:
        own = gov.scopes[0]
        limits = {"budget_usd": r.budget_usd, "rpm": r.rpm, "tpm": r.tpm}
        own.apply({k: v for k, v in limits.items() if v is not None}, self.ledger.clock())
        return own

    # ---- limits and budget pauses ------------------------------------------------------
    def agent_of(self, scope: Scope) -> Managed | None:
        return self.agents.get(scope.agent_id) if scope.agent_id else None

    def resolve_scope(self, text: str) -> Scope:
        """`global`, `project:NAME`, `agent:REF` or a bare agent REF, as a ledger scope."""
        return resolve_scope(self.ledger, self.find, text)

    def all_scopes(self) -> list[Scope]:
        return sorted_scopes(self.ledger)

    async def set_limits(self, scope: Scope, changes: dict[str, object]) -> Scope:
        """Apply limit changes live (waiting and paused calls are re-evaluated at once) and
        persist them; an agent's own scope is mirrored on its record."""
        before = scope.limits_state()
        self.ledger.set_limits(scope, changes)
        if not await self.books.save_scope(scope):
            # Not on disk, so not at all: a limit must not vanish with the next restart.
            scope.restore_limits(before)
            raise sqlite3.OperationalError(f"could not save the limits of {scope.key}")
        m = self.agent_of(scope)
        if m is not None:
            self.snapshot(m)
            await self._save(m)
        await self.bus.publish(
            "LimitsChanged",
            m.record.id if m is not None else None,
            scope=scope.key,
            **{k: v for k, v in changes.items() if not isinstance(v, tuple)},
        )
        return scope

    async def _set(self, m: Managed, status: AgentStatus) -> None:
        states.check(m.record.status, status)
        m.record.status = status
        await self._save(m)
        changed, m.changed = m.changed, anyio.Event()
        changed.set()

    async def _save(self, m: Managed) -> None:
        m.record.spent_usd = m.gov.spent_usd
        try:
            await agent_store.save(self.db, m.stored)
        except sqlite3.Error as exc:
            # Disk full: the state stays right in memory and is written with the next change.
            log.error("could not save agent %s: %s", m.record.id, exc)

    async def _sample_loop(self) -> None:
        while True:
            roots: dict[str, tuple[int, float | None]] = {
                m.record.id: (m.record.pid, m.stored.pid_started)
                for m in self.agents.values()
                if m.record.status.live and m.record.pid is not None
            }
            if roots:
                samples = await anyio.to_thread.run_sync(self._sample_and_rotate, roots)
                for agent_id, sample in samples.items():
                    if agent_id in self.agents:
                        self.agents[agent_id].sample = sample
            await anyio.sleep(self.sample_interval)

    def _sample_and_rotate(
        self, roots: dict[str, tuple[int, float | None]]
    ) -> dict[str, TreeSample]:
        """One worker-thread trip per tick: psutil and file stats block, the loop must not."""
        for agent_id in roots:
            logfiles.rotate_if_needed(logfiles.log_path(self.settings.logs_dir, agent_id))
        return self._sampler.sample(roots)
