"""The supervisor: owns every agent's lifecycle from spawn to its final status.

Each agent has exactly one watcher task (in the supervisor's task group) for as long as it
is alive, across restarts; only that task records how a process ended, so a stop, a crash
and a restart can never race each other into two statuses. Operations on one agent (stop,
restart, remove, update, a restart by policy) are serialised by its lock. Every state
change is written to the store before it is announced, and a new process runs none of the
agent's code before its pid is on disk, so a daemon killed at any moment restarts knowing
every process the last one started (see `recover`).
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import time
from pathlib import Path

import anyio
import msgspec
from anyio.abc import TaskGroup

from ironrt.config import Settings
from ironrt.errors import AgentNotFound, Conflict, StartFailed
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
from ironrt.supervisor.environment import new_token, scrub, token_hash
from ironrt.supervisor.logrelay_client import LogRelay
from ironrt.supervisor.managed import Managed
from ironrt.supervisor.metrics import metrics_for
from ironrt.supervisor.restart import decide, pending
from ironrt.supervisor.sampler import TreeSampler
from ironrt.supervisor.spawning import spawn_run

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
        self.logs = LogRelay(settings.home / "logrelay.sock", settings.logs_dir / "logrelay.err")
        #: Names of agents being started: taken before the first await, so two concurrent
        #: starts can never both get one name.
        self._reserved: set[str] = set()

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
        """Load the agents the store knows, recover each, and start background work."""
        self._tg = tg
        await self.logs.start()
        tg.start_soon(self.logs.watch)
        for stored in await agent_store.load_all(self.db):
            gov = governance.get(stored.record.id) or AgentGovernance(stored.record.id)
            fresh = scope_key("agent", stored.record.id) not in self.ledger.scopes
            gov.scopes = self.scopes_for(stored.record)
            if fresh:  # no row yet (a v1 database migrates one): limits from the record
                self._limit_own(gov, stored.record)
            self._apply_settings(gov, stored.record)
            gov.spent_usd = stored.record.spent_usd
            self.agents[stored.record.id] = Managed(stored, gov)
        for m in list(self.agents.values()):
            await self._recover(m)
        tg.start_soon(self._sample_loop)
        tg.start_soon(self._pauses.run)

    async def _recover(self, m: Managed) -> None:
        """Take up an agent where the last daemon left it, whatever it was doing then.

        Alive: reattach (and finish a stop that was under way). Gone while it should run:
        started again under the same id if its policy restarts it (a reboot, a killed
        process group), else `exited` with `lost`. Ended while waiting out a restart
        backoff: restarted now.
        """
        r = m.record
        if not r.status.live:
            if r.status in (S.EXITED, S.KILLED) and pending(r):
                await self._resurrect(m, "restart_interrupted")
            return
        if r.pid is not None and process.is_same_process(r.pid, m.stored.pid_started):
            await self._reattach(m)
            return
        r.ended_at = utcnow()
        r.exit_code = r.signal = None
        self._revoke(m)
        if r.status is S.STOPPING:  # it was being stopped, and it did
            await self._set(m, S.STOPPED)
            await self.bus.publish("AgentStopped", r.id, exit_code=None, while_daemon_down=True)
            return
        if r.restart != "no":  # always, or on-failure: an unknowable exit is a failure
            await self._resurrect(m, "process_gone")
            return
        r.lost = True
        await self._set(m, S.EXITED)
        await self.bus.publish(
            "AgentExited", r.id, exit_code=None, while_daemon_down=True, lost=True
        )

    async def _reattach(self, m: Managed) -> None:
        r = m.record
        assert r.pid is not None
        if m.stored.token_hash:
            self.by_token[m.stored.token_hash] = m.gov
        m.started_mono = time.monotonic() - max(time.time() - (m.stored.pid_started or 0), 0)
        if r.status is S.STARTING:
            await self._set(m, S.RUNNING)
        if r.status is S.PAUSED:
            # The call that paused it died with the last daemon: let it run again.
            process.signal_tree(process.tree(r.pid, m.stored.pid_started), signal.SIGCONT)
            r.stop_reason = None
            await self._set(m, S.RUNNING)
        await self.bus.publish("AgentReattached", r.id, pid=r.pid)
        self._watch(m)
        if r.status is S.STOPPING:  # the last daemon died during the grace period
            m.stop_requested = True
            assert self._tg is not None
            self._tg.start_soon(self._finish_stop, m)

    async def _finish_stop(self, m: Managed) -> None:
        async with m.lock:
            if m.record.status is S.STOPPING:
                await self._kill(m, 10.0)

    async def _resurrect(self, m: Managed, why: str) -> None:
        """Start an agent again under its id, spec, budget and spend (counted as a restart)."""
        r = m.record
        async with m.lock:
            # A descendant that escaped its group may have outlived it: it is not recorded.
            await process.kill_tree(await anyio.to_thread.run_sync(process.escaped, r.id), 2.0)
            r.restarts += 1
            r.lost = False
            try:
                await self._spawn(m)
            except StartFailed as exc:
                r.error = exc.message
                await self._set(m, S.FAILED)
                await self.bus.publish("AgentFailed", r.id, reason=exc.message)
                return
            await self.bus.publish("AgentResurrected", r.id, pid=r.pid, reason=why)
            self._watch(m)

    async def shutdown(self, *, keep_agents: bool, timeout: float = 10.0) -> None:
        if not keep_agents:
            async with anyio.create_task_group() as tg:
                for m in list(self.agents.values()):
                    if m.record.status.live or m.restart_pending:
                        tg.start_soon(self._stop_locked, m, timeout, "user")
        await self.logs.aclose()

    # ---- operations ---------------------------------------------------------------------
    async def start(self, req: StartRequest) -> Agent:
        command = resolve_command(req)
        taken = self._live_names() | self._reserved
        if req.name is not None:
            if req.name in taken:
                raise Conflict(f"an agent named '{req.name}' is already running", field="name")
            name = req.name
        else:
            name = unique_name(default_name(req.command), taken)
        self._reserved.add(name)  # before the first await: names are unique under races
        try:
            return await self._start(req, command, name)
        finally:
            self._reserved.discard(name)

    async def _start(self, req: StartRequest, command: list[str], name: str) -> Agent:
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
            min_uptime_s=req.min_uptime_s,
            log_max_bytes=req.log_max_bytes or self.settings.log_max_bytes,
            log_keep=req.log_keep or self.settings.log_keep,
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
        except BaseException:
            self.ledger.drop(own.key)
            with anyio.CancelScope(shield=True):
                await agent_store.delete(self.db, agent_id)
                await scope_store.delete(self.db, own.key)
            raise
        self.agents[agent_id] = m
        await self.bus.publish("AgentStarted", agent_id, pid=record.pid, name=name)
        self._watch(m)
        return self.snapshot(m)

    async def stop(self, ref: str, timeout: float, reason: StopReason = "user") -> Agent:
        m = self.find(ref)
        await self._stop_locked(m, timeout, reason)
        return self.snapshot(m)

    async def _stop_locked(self, m: Managed, timeout: float, reason: StopReason) -> None:
        # Asked before waiting for the lock: a restart by policy waiting for it stands down.
        m.stop_requested = True
        m.wake.set()
        async with m.lock:
            self._present(m)
            await self._stop(m, timeout, reason)

    async def restart(self, ref: str, timeout: float) -> Agent:
        m = self.find(ref)
        async with m.lock:
            self._present(m)
            r = m.record
            if r.status.live:
                await self._stop(m, timeout)
            elif r.name in self._live_names() | self._reserved:
                raise Conflict(f"an agent named '{r.name}' is already running", field="name")
            m.restart_pending = False  # a restart by policy it was waiting for is this one
            m.wake = anyio.Event()
            r.exit_code = r.signal = None
            r.error = None
            r.stop_reason = None
            r.restarts += 1
            r.unstable_restarts = 0  # a person asked: the crash count starts over
            await self._spawn(m)
            await self.bus.publish("AgentRestarted", r.id, pid=r.pid, manual=True)
            self._watch(m)
        return self.snapshot(m)

    async def remove(self, ref: str, force: bool, timeout: float) -> Agent:
        m = self.find(ref)
        async with m.lock:
            self._present(m)
            r = m.record
            if r.status.live or m.restart_pending:
                if not force:
                    raise Conflict(f"agent {r.id} is {r.status.value}: stop it first or use force")
                m.stop_requested = True
                m.wake.set()
                await self._stop(m, timeout)
            m.removed = True
            self.agents.pop(r.id, None)
            with anyio.CancelScope(shield=True):
                await agent_store.delete(self.db, r.id)
                own = scope_key("agent", r.id)
                self.ledger.drop(own)
                await self.books.delete_scope(own)
            self.logs.release(r.id)
            logfiles.remove_logs(logfiles.log_path(self.settings.logs_dir, r.id), r.log_keep)
            await self.bus.publish("AgentRemoved", r.id)
        return self.snapshot(m)

    async def update(self, ref: str, req: UpdateRequest) -> Agent:
        m = self.find(ref)
        async with m.lock:
            self._present(m)
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

    def _present(self, m: Managed) -> None:
        """After waiting for an agent's lock: it may have been removed meanwhile."""
        if m.removed:
            raise AgentNotFound(f"agent {m.record.id} was removed")

    def _live_names(self) -> set[str]:
        return {
            m.record.name for m in self.agents.values() if m.record.status.live or m.restart_pending
        }

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
        """Start one run: the process waits at its gate until its pid is on disk."""
        r = m.record
        token = new_token()
        spawned = await spawn_run(
            self.logs, self.settings.logs_dir, r, m.stored.env, token, self.router_url
        )
        previous = (r.pid, m.stored.pid_started, r.status, r.started_at, r.ended_at)
        r.pid, m.stored.pid_started = spawned.pid, spawned.started
        r.started_at, r.ended_at = utcnow(), None
        states.check(r.status, S.STARTING)
        r.status = S.STARTING
        try:
            await agent_store.save(self.db, m.stored)
        except BaseException as exc:
            # Not on disk, so never run: the gate closes and the shell exits unexecuted.
            process.close_gate(spawned)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(spawned.popen.wait if spawned.popen else int)
            r.pid, m.stored.pid_started, r.status, r.started_at, r.ended_at = previous
            if isinstance(exc, sqlite3.Error):
                raise StartFailed(f"cannot record the new process: {exc}") from exc
            raise
        process.open_gate(spawned)
        if m.stored.token_hash:
            self.by_token.pop(m.stored.token_hash, None)
        hashed = token_hash(token)
        m.stored.token_hash = hashed
        m.popen = spawned.popen
        m.gov.active = True
        m.restart_pending = False
        self.by_token[hashed] = m.gov
        r.stop_reason = None
        m.started_mono = time.monotonic()
        m.stop_requested = False
        await self._save(m)  # the token hash, for a daemon that reattaches
        self._notify(m)

    def _watch(self, m: Managed) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._watcher, m, name=f"watch {m.record.id}")

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
        leftovers = await anyio.to_thread.run_sync(process.tree, pid, None, r.id)
        if leftovers:
            await process.kill_tree(leftovers, grace=2.0)
        m.popen = None
        r.exit_code, r.signal = code, sig
        r.ended_at = utcnow()
        self._revoke(m)
        self.logs.release(r.id)
        if m.stop_requested:
            # Announced first: `stop` returns once the status is final, and by then the
            # event must be there for whoever reads it next.
            await self.bus.publish("AgentStopped", r.id, exit_code=code, signal=sig)
            await self._set(m, S.STOPPED)
            return False
        r.stop_reason = None  # it ended by itself, whatever had paused it
        final = S.KILLED if sig is not None else S.EXITED
        decision = decide(r, uptime, self.restart_backoff)
        if decision.gave_up:
            r.error = (
                f"ended {r.unstable_restarts + 1} times in a row within {r.min_uptime_s:g}s "
                f"of starting; restart limit ({r.max_restarts}) reached"
            )
            final = S.FAILED
        m.restart_pending = decision.restart
        # Announced before the status (as a stop is): whoever sees the status final finds
        # the events that explain it.
        await self.bus.publish(
            "AgentKilled" if sig is not None else "AgentExited", r.id, exit_code=code, signal=sig
        )
        if decision.gave_up:
            await self.bus.publish("AgentFailed", r.id, reason=r.error)
        await self._set(m, final)
        if not decision.restart:
            return False
        await self.bus.publish(
            "AgentRestarting",
            r.id,
            attempt=r.restarts + 1,
            unstable=r.unstable_restarts,
            delay_s=decision.delay_s,
        )
        with anyio.move_on_after(decision.delay_s):
            await m.wake.wait()
        async with m.lock:
            if not m.restart_pending or m.removed:
                return False  # an operation took it over (stop, restart, remove)
            r.restarts += 1
            try:
                await self._spawn(m)
            except StartFailed as exc:
                m.restart_pending = False
                r.error = exc.message
                await self._set(m, S.FAILED)
                await self.bus.publish("AgentFailed", r.id, reason=exc.message)
                return False
        return True

    async def _promote_after_startsecs(self, m: Managed, pid: int) -> None:
        remaining = STARTSECS - (time.monotonic() - m.started_mono)
        if remaining > 0:
            await anyio.sleep(remaining)
        if m.record.pid == pid and m.record.status is S.STARTING:
            await self._set(m, S.RUNNING)

    async def _stop(self, m: Managed, timeout: float, reason: StopReason = "user") -> None:
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
                await self.bus.publish("AgentStopped", r.id, exit_code=r.exit_code)
                await self._set(m, S.STOPPED)
            return
        if r.status is not S.STOPPING:
            await self._set(m, S.STOPPING)
        await self._kill(m, timeout)

    async def _kill(self, m: Managed, timeout: float) -> None:
        """End the agent's whole tree and wait (bounded) for the watcher's final status."""
        r = m.record
        assert r.pid is not None
        procs = await anyio.to_thread.run_sync(process.tree, r.pid, m.stored.pid_started, r.id)
        forced = await process.kill_tree(procs, grace=timeout)
        if forced:
            await self.bus.publish("AgentForceKilled", r.id, grace_s=timeout)
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
        try:
            states.check(m.record.status, status)
        except states.IllegalTransition as exc:
            # What the process did is a fact: record it, and say that it was unexpected.
            log.error("agent %s: %s (recorded as it happened)", m.record.id, exc)
        m.record.status = status
        await self._save(m)
        self._notify(m)

    def _notify(self, m: Managed) -> None:
        changed, m.changed = m.changed, anyio.Event()
        changed.set()

    async def _save(self, m: Managed) -> None:
        if m.removed:
            return  # a removed agent must not come back with the next restart
        m.record.spent_usd = m.gov.spent_usd
        try:
            await agent_store.save(self.db, m.stored)
        except (sqlite3.Error, OverflowError) as exc:
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
                samples = await anyio.to_thread.run_sync(self._sampler.sample, roots)
                for agent_id, sample in samples.items():
                    if agent_id in self.agents:
                        self.agents[agent_id].sample = sample
            await anyio.sleep(self.sample_interval)
