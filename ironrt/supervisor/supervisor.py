"""The supervisor: every agent the daemon knows, and the operations people ask of them.

Operations on one agent (stop, restart, remove, update, and a restart by policy) are
serialised by the agent's lock, so no two of them interleave; a removed agent stays
removed. Names are unique among live agents even under concurrent starts. The mechanics
of one run live in `lifecycle`, taking up agents after a daemon restart in `recovery`.

The supervisor's agents are the processes it started ("process" records). Records of
library-mode scopes ("library", written by other processes) are listed with them, read
fresh from the store each time (`library`); `wait` polls one, `remove` deletes an ended
one, and every other operation on one answers 409. Limits and scopes: `limits`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import msgspec
from anyio.abc import TaskGroup

from ironrt.config import Settings
from ironrt.errors import AgentNotFound, Conflict
from ironrt.events import EventBus, utcnow
from ironrt.governance.agent import AgentGovernance
from ironrt.governance.ledger import Ledger, scope_key
from ironrt.policies.pii_rules import RulesFiles, rules_files
from ironrt.protocol import (
    Agent,
    AgentList,
    AgentStatus,
    Metrics,
    StartRequest,
    StopReason,
    UpdateRequest,
)
from ironrt.protocol.events import AgentRemoved, AgentRestarted, AgentStarted, AgentUpdated
from ironrt.store import agents as agent_store
from ironrt.store import scopes as scope_store
from ironrt.store.agents import StoredAgent
from ironrt.store.books import Books
from ironrt.store.db import Database
from ironrt.supervisor import library, logfiles, rlimits, states
from ironrt.supervisor.agents import resolve, unique_name
from ironrt.supervisor.budgets import BudgetPauses
from ironrt.supervisor.commands import default_name, resolve_command
from ironrt.supervisor.environment import scrub
from ironrt.supervisor.lifecycle import Lifecycle
from ironrt.supervisor.limits import SupervisorLimits
from ironrt.supervisor.logrelay_client import LogRelay, RelayBroken
from ironrt.supervisor.managed import Managed, govern
from ironrt.supervisor.memory import MemoryGuard
from ironrt.supervisor.metrics import metrics_for
from ironrt.supervisor.recovery import recover
from ironrt.supervisor.sampling import sample_forever
from ironrt.values import RESERVED_NAMES

S = AgentStatus
log = logging.getLogger("ironrt.supervisor")


class Supervisor(SupervisorLimits):
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
        pii_rules: RulesFiles | None = None,
    ) -> None:
        self.settings = settings
        self.pii_rules = pii_rules or rules_files(settings)
        self.db = db
        self.bus = bus
        self.router_url = router_url
        self.ledger = ledger or Ledger()
        self.books = books or Books(db)
        self.fleet = None
        self.restart_backoff = restart_backoff
        self.sample_interval = sample_interval
        self.agents: dict[str, Managed] = {}
        self.logs = LogRelay(settings.home / "logrelay.sock", settings.logs_dir / "logrelay.err")
        self.life = Lifecycle(
            logs_dir=settings.logs_dir,
            db=db,
            bus=bus,
            ledger=self.ledger,
            logs=self.logs,
            router_url=router_url,
            restart_backoff=restart_backoff,
        )
        self.by_token = self.life.by_token
        self._pauses = BudgetPauses(self.ledger, bus, self.agents, self.life.set)
        #: Names of agents being started: taken before the first await, so two concurrent
        #: starts can never both get one name.
        self._reserved: set[str] = set()

    # ---- lookup -------------------------------------------------------------------------
    def find(self, ref: str) -> Managed:
        agent_id = resolve(
            ref,
            (
                (a.record.id, a.record.name, a.record.status.live or a.restart_pending)
                for a in self.agents.values()
            ),
        )
        return self.agents[agent_id]

    async def _find_supervised(
        self, ref: str, refuse: Callable[[Agent], Conflict] = library.conflict
    ) -> Managed:
        """`find`, for operations that act on an agent or its process: a ref naming a
        library record (none of the daemon's agents) is a `Conflict`, not an unknown agent."""
        try:
            return self.find(ref)
        except AgentNotFound as missing:
            raise refuse(await library.named(self.db, ref, missing)) from None

    async def get(self, ref: str) -> Agent:
        """One agent as it is now: one of the daemon's, else a library record."""
        try:
            return self.find(ref).snapshot()
        except AgentNotFound as missing:
            return await library.named(self.db, ref, missing)

    async def listing(self, *, metrics: bool = False) -> AgentList:
        """Every agent: the daemon's own, then the library records as the store has them
        now (another process may have written one a moment ago); with `metrics`, each
        one's metrics in the same order."""
        libraries = await library.records(self.db)
        own = list(self.agents.values())
        agents = [m.snapshot() for m in own] + libraries
        if not metrics:
            return AgentList(agents=agents)
        found = [self.metrics_of(m) for m in own] + [library.metrics(r) for r in libraries]
        return AgentList(agents=agents, metrics=found)

    def governance_for_token(self, hashed: str) -> AgentGovernance | None:
        """The agent a token hash belongs to. Lookup is by SHA-256 of the token, never the
        token: whatever a timing side channel of the lookup could reveal is about a hash,
        from which no token can be recovered (the constant-time comparison that matters)."""
        return self.by_token.get(hashed)

    # ---- life of the service ----------------------------------------------------------
    async def run(self, tg: TaskGroup, governance: dict[str, AgentGovernance]) -> None:
        """Load the agents the store knows, recover each, and start background work."""
        self.life.tg = tg
        # Its own agents only: library records belong to the processes that wrote them.
        stored_agents = await agent_store.load_all(self.db, "process")
        if any(stored.record.status.live for stored in stored_agents):
            # Agents that outlived the last daemon: their pipes are adopted from the relay
            # before they are recovered.
            await self.logs.start()
        else:
            # Nothing to adopt: the relay (a process that takes ~100-250 ms to answer) is
            # reached in the background, not before the router answers; an agent started
            # meanwhile waits for it (`LogRelay.pipe_for` reaches or starts one itself).
            tg.start_soon(self._start_logs)
        tg.start_soon(self.logs.watch)
        for stored in stored_agents:
            gov = governance.get(stored.record.id) or AgentGovernance(stored.record.id)
            fresh = scope_key("agent", stored.record.id) not in self.ledger.scopes
            gov.scopes = self.scopes_for(stored.record)
            if fresh:  # no row yet (a v1 database migrates one): limits from the record
                self._limit_own(gov, stored.record)
            self.agents[stored.record.id] = Managed(stored, govern(gov, stored.record))
        for m in list(self.agents.values()):
            await recover(self.life, m)
        await library.records(self.db)  # those whose process died meanwhile: ended
        tg.start_soon(sample_forever, self.agents, MemoryGuard(self.life), self.sample_interval)
        tg.start_soon(self._pauses.run)

    async def _start_logs(self) -> None:
        try:
            await self.logs.start()
        except (OSError, RelayBroken) as exc:  # the next agent's start tries again
            log.warning("log relay: not started yet (%s)", exc)

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
        rlimits.check(req)
        self.check_pii(req.pii_types, req.pii_file)
        taken = self._live_names() | self._reserved | RESERVED_NAMES  # all.py runs as all-2
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
        agent_id = agent_store.new_agent_id()
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
            pii_types=req.pii_types,
            pii_file=req.pii_file,
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
            spec_digest=req.spec_digest,
            max_memory_bytes=req.max_memory_bytes,
            max_open_files=req.max_open_files,
            max_cpu_seconds=req.max_cpu_seconds,
            env_files=list(req.env_files),
        )
        env = scrub(req.env)
        env.update({k: v for k, v in scrub(req.env_overrides).items()})
        gov = govern(AgentGovernance(agent_id), record)
        gov.scopes = self.scopes_for(record)
        own = self._limit_own(gov, record)
        m = Managed(StoredAgent(record, env, None, None), gov)
        # Written before the process exists: an agent the store cannot record is never
        # started (a crash would lose it). A full disk fails here, cleanly.
        try:
            await agent_store.save(self.db, m.row())
            await scope_store.save(self.db, own)
        except BaseException:
            self.ledger.drop(own.key)
            raise
        try:
            await self.life.spawn(m)
        except BaseException:
            self.ledger.drop(own.key)
            with anyio.CancelScope(shield=True):
                await agent_store.delete(self.db, agent_id)
                await scope_store.delete(self.db, own.key)
            raise
        self.agents[agent_id] = m
        await self.bus.publish(AgentStarted(agent_id=agent_id, pid=record.pid, name=name))
        self.life.watch(m)
        return m.snapshot()

    async def stop(self, ref: str, timeout: float, reason: StopReason = "user") -> Agent:
        m = await self._find_supervised(ref)
        await self._stop_locked(m, timeout, reason)
        return m.snapshot()

    async def _stop_locked(self, m: Managed, timeout: float, reason: StopReason) -> None:
        # Asked before waiting for the lock: a restart by policy waiting for it stands down.
        m.stop_requested = True
        m.wake.set()
        async with m.lock:
            self._present(m)
            await self.life.stop(m, timeout, reason)

    async def restart(self, ref: str, timeout: float) -> Agent:
        m = await self._find_supervised(ref)
        async with m.lock:
            self._present(m)
            r = m.record
            if r.status.live:
                await self.life.stop(m, timeout)
            elif r.name in self._live_names() | self._reserved:
                raise Conflict(f"an agent named '{r.name}' is already running", field="name")
            m.restart_pending = False  # a restart by policy it was waiting for is this one
            m.wake = anyio.Event()
            r.exit_code = r.signal = None
            r.error = None
            r.stop_reason = None
            r.restarts += 1
            r.unstable_restarts = 0  # a person asked: the crash count starts over
            await self.life.spawn(m)
            await self.bus.publish(AgentRestarted(agent_id=r.id, pid=r.pid, manual=True))
            self.life.watch(m)
        return m.snapshot()

    async def remove(self, ref: str, force: bool, timeout: float) -> Agent:
        """Stop (with `force`) and remove an agent: its record, own scope and logs; its
        traces and events stay. A library record, only once ended (`library`)."""
        try:
            m = self.find(ref)
        except AgentNotFound as missing:
            r = library.removable(await library.named(self.db, ref, missing))
            with anyio.CancelScope(shield=True):
                await agent_store.delete(self.db, r.id)
                await self._forget_scope(r.id)
            await self.bus.publish(AgentRemoved(agent_id=r.id))
            return r
        async with m.lock:
            self._present(m)
            r = m.record
            if r.status.live or m.restart_pending:
                if not force:
                    raise Conflict(f"agent {r.id} is {r.status.value}: stop it first or use force")
                m.stop_requested = True
                m.wake.set()
                await self.life.stop(m, timeout)
            with anyio.CancelScope(shield=True):
                # Off the disk first: a delete the disk refuses (507) leaves the agent
                # listed, as it still is on disk, instead of coming back at the next start.
                await agent_store.delete(self.db, r.id)
                m.removed = True
                self.agents.pop(r.id, None)
                await self._forget_scope(r.id)
            self.logs.release(r.id)
            logfiles.remove_logs(logfiles.log_path(self.settings.logs_dir, r.id), r.log_keep)
            await self.bus.publish(AgentRemoved(agent_id=r.id))
        return m.snapshot()

    async def update(self, ref: str, req: UpdateRequest) -> Agent:
        """Limits go to the agent's own scope (live, see `set_limits`); settings to its
        governance, in place, once the disk holds them."""
        m = await self._find_supervised(ref)
        async with m.lock:
            self._present(m)
            changes: dict[str, object] = {
                name: getattr(req, name)
                for name in ("budget_usd", "pii", "pii_types", "on_budget", "rpm", "tpm")
                if getattr(req, name) is not msgspec.UNSET
            }
            if isinstance(req.pii_types, dict):
                self.check_pii(req.pii_types, m.gov.pii_file)
            scope = m.gov.scopes[0]
            limits_before = scope.limits_state()
            limits = {k: v for k, v in changes.items() if k in ("budget_usd", "rpm", "tpm")}
            settings = {k: v for k, v in changes.items() if k not in limits}
            try:
                if limits:
                    await self.set_limits(scope, limits)
                await self.life.save_or_raise(m, **settings)
            except BaseException:
                # The disk refused: memory goes back to what the disk holds (507).
                if limits:
                    scope.restore_limits(limits_before)
                    with anyio.CancelScope(shield=True):
                        await self.books.save_scope(scope)
                raise
            for name, value in settings.items():
                setattr(m.gov, name, value)
            await self.bus.publish(AgentUpdated(agent_id=m.record.id, changes=changes))
        return m.snapshot()

    async def _forget_scope(self, agent_id: str) -> None:
        """A removed agent's own scope, gone from the ledger and the disk."""
        own = scope_key("agent", agent_id)
        self.ledger.drop(own)  # a library agent's, if this daemon loaded its row
        await self.books.delete_scope(own)

    def _present(self, m: Managed) -> None:
        """After waiting for an agent's lock: it may have been removed meanwhile."""
        if m.removed:
            raise AgentNotFound(f"agent {m.record.id} was removed")

    def _live_names(self) -> set[str]:
        return {
            m.record.name for m in self.agents.values() if m.record.status.live or m.restart_pending
        }

    async def wait(self, ref: str, timeout: float) -> Agent:
        try:
            m = self.find(ref)
        except AgentNotFound as missing:
            r = await library.named(self.db, ref, missing)
            return await library.wait(self.db, r, missing, timeout)
        with anyio.move_on_after(timeout):
            while not self.finished(m):
                await m.changed.wait()
        return m.snapshot()

    async def metrics(self, ref: str) -> Metrics:
        return self.metrics_of(await self._find_supervised(ref, library.no_process("metrics")))

    def metrics_of(self, m: Managed) -> Metrics:
        r = m.snapshot()
        live = r.status.live and r.pid is not None
        uptime = time.monotonic() - m.started_mono if live else 0.0
        return metrics_for(r, m.gov, m.sample if live else None, uptime)

    async def log_file(self, ref: str) -> tuple[Managed, Path]:
        m = await self._find_supervised(ref, library.no_process("logs"))
        return m, logfiles.log_path(self.settings.logs_dir, m.record.id)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.agents.values():
            out[m.record.status.value] = out.get(m.record.status.value, 0) + 1
        return out

    # ---- internals ----------------------------------------------------------------------
    def finished(self, m: Managed) -> bool:
        """Ended for good: not live, and no restart by policy pending."""
        return m.record.status in states.ENDED and not m.restart_pending
