"""The router as a daemon service: the pipeline, the upstream clients, and the books.

Settling a call is the one place where money is counted: the call is charged by the rule
in `charging.py`, the policies' `complete` hooks run (the budget turns its hold into spend
in every scope), and the trace row, the agent's spend and its scopes' window spend are
written as one record of the books' journal, before the agent receives the end of its
answer (`relay.py`), and committed to SQLite behind it (`ironrt.store.books`). A daemon
killed at any moment has every answered call's cost on disk.

Then the call's events are handed to the outbox (stored behind the answer, `outbox.py`),
and the ledger's budget announcements are published:
those are published from the ledger's queue, in the order the books decided them, by one
publisher at a time (`announce`), so a refusal's `BudgetExhausted` is never stored before
the warnings of a call that settled first, even when that call's commit took longer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from ironrt.config import ConfigError, Settings
from ironrt.events import EventBus, wall_clock
from ironrt.governance.agent import AgentGovernance
from ironrt.governance.charging import charge, is_snapshot
from ironrt.governance.flow import Flow
from ironrt.governance.ledger import Ledger, Scope, nanos_to_usd
from ironrt.governance.ledger.ledger import LedgerEvent
from ironrt.governance.output_limits import OutputLimits
from ironrt.governance.pipeline import Pipeline
from ironrt.governance.policy import Policy
from ironrt.governance.pricing import Pricer
from ironrt.keys import ProviderKeys
from ironrt.policies.allowlist import AllowlistPolicy
from ironrt.policies.breaker import CircuitBreakerPolicy
from ironrt.policies.budget import BudgetPolicy
from ironrt.policies.pii import PiiPolicy
from ironrt.policies.pii_rules import RulesFiles, rules_files
from ironrt.policies.ratelimit import RateLimitPolicy
from ironrt.policies.retry import RetryPolicy
from ironrt.policies.settings import ReliabilitySettings
from ironrt.protocol import BudgetWindowReset, Event, Trace
from ironrt.providers import registry
from ironrt.router.app import RouterApp
from ironrt.router.egress import RouterConfig
from ironrt.router.outbox import Outbox
from ironrt.router.prices_file import load_configured, load_output_limits
from ironrt.store.books import Books
from ironrt.store.db import Database
from ironrt.transports.http import Upstream

log = logging.getLogger("ironrt.router")


class Agents(Protocol):
    """What the router needs of the agents' owner (the supervisor, one layer up): who a
    token belongs to, the shared ledger and books, and a way to stop an agent whose budget
    says so."""

    ledger: Ledger
    books: Books

    def governance_for_token(self, hashed: str) -> AgentGovernance | None: ...

    async def stop(self, ref: str, timeout: float, reason: Any = ...) -> Any: ...


#: Told of each settled call: its record and the flow it came from (read only).
CallObserver = Callable[[Trace, Flow], None]


def overhead_ms(flow: Flow, now: float) -> float | None:
    """The time the router itself added to the call: its latency minus the time spent
    waiting on the upstream (None: no upstream was asked)."""
    if flow.upstream_status is None and flow.upstream_failure is None:
        return None
    return round(max((now - flow.started) - flow.upstream_s, 0.0) * 1000, 3)


def build_policies(
    pricer: Pricer,
    outputs: OutputLimits,
    ledger: Ledger,
    reliability: ReliabilitySettings,
    pii_rules: RulesFiles | None = None,
) -> list[Policy]:
    """The ordered pipeline: allowlist → budget → safety → reliability. A new policy is one
    line here.

    The retry policy comes after the breaker: it reads the breaker's verdict on the same
    attempt before deciding to try again.
    """
    return [
        AllowlistPolicy(),
        BudgetPolicy(pricer, outputs, ledger),
        PiiPolicy(rules=pii_rules),
        RateLimitPolicy(),
        CircuitBreakerPolicy(reliability),
        RetryPolicy(reliability),
    ]


class RouterService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: EventBus,
        supervisor: Agents,
        keys: ProviderKeys,
        *,
        pii_rules: RulesFiles | None = None,
    ) -> None:
        """`pii_rules`: the daemon's (shared with the supervisor, which checks selections
        against them); built from the settings if not given."""
        self.settings = settings
        self.ledger = ledger = supervisor.ledger
        self.db = db
        self.bus = bus
        self.supervisor = supervisor
        self.keys = keys
        self.governance: dict[str, AgentGovernance] = {}
        prices = settings.home / "prices.toml"
        try:
            self.pricer = Pricer(load_configured(prices))
            self.outputs = OutputLimits(load_output_limits(prices))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.books = supervisor.books
        self.reliability = settings.reliability
        self.pipeline = Pipeline(
            build_policies(
                self.pricer,
                self.outputs,
                ledger,
                self.reliability,
                pii_rules if pii_rules is not None else rules_files(settings),
            )
        )
        self.upstream = Upstream(self.reliability)
        config = RouterConfig(
            offline=settings.offline,
            # Every registered provider's configured upstream (None: its entry's default).
            base_urls={e.name: settings.base_urls.get(e.name) for e in registry.entries()},
            keys=self._key_for,
        )
        self.app = RouterApp(
            config,
            self.pipeline,
            self.upstream,
            supervisor.governance_for_token,
            self.settle,
            ledger,
            settings.admission_timeout,
            after_answer=self.after_answer,
        )
        self.outbox = Outbox(bus)
        #: Told of every settled call once it is on disk (metrics, spans, telemetry):
        #: synchronous and quick, never blocking (each hands work to its own task).
        self.observers: list[CallObserver] = []
        self._stop_requests, self._stop_receive = anyio.create_memory_object_stream[str](100)
        self._resets, self._resets_receive = anyio.create_memory_object_stream[Scope](math.inf)
        ledger.on_reset = self._resets.send_nowait
        self._announcing = anyio.Lock()
        self._announce_wanted = anyio.Event()
        ledger.on_announce = self._want_announce

    def _key_for(self, provider: str) -> tuple[str, str] | None:
        key = self.keys.get(provider)
        return None if key is None else (self.keys.sources[provider], key)

    async def load(self, totals: dict[str, tuple[int, int, int, int]]) -> None:
        """Seed per-agent counters from the traces on disk (the daemon may have restarted)."""
        for agent_id, (calls, inp, out, errors) in totals.items():
            gov = AgentGovernance(agent_id)
            gov.llm_calls, gov.input_tokens, gov.output_tokens, gov.errors = calls, inp, out, errors
            self.governance[agent_id] = gov

    def circuits(self) -> dict[str, str]:
        breaker = self.pipeline.get("breaker")
        states = getattr(breaker, "states", None)
        return dict(states()) if callable(states) else {}

    async def run(self) -> None:
        """Background work the hot path hands off: committing calls, stopping agents whose
        budget ran out."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.books.run)
            tg.start_soon(self.outbox.run)
            tg.start_soon(self._persist_resets)
            tg.start_soon(self.ledger.run)
            tg.start_soon(self._announce_when_wanted)
            await self._stop_exhausted()

    async def announce(self) -> None:
        """Publish the ledger's budget announcements queued so far, in queue order.

        One publisher at a time: each publish awaits the database, and two interleaved
        publishers would store a later announcement before an earlier one. Whoever holds
        the lock publishes everything it popped before letting go, so when this returns
        every announcement queued before the call is stored.
        """
        queue = self.ledger.announcements
        if not queue and not self._announcing.locked():
            return  # nothing queued, nobody publishing: no lock round trip per call
        async with self._announcing:
            for _ in range(len(queue)):  # not what arrives meanwhile: no caller waits forever
                if not queue:
                    break
                item = queue.popleft()
                if isinstance(item, LedgerEvent):
                    await self.bus.publish(item.event)
                else:
                    try:
                        item()  # a pause or resume for the supervisor, in its turn
                    except Exception:
                        log.exception("could not deliver a budget pause or resume")

    async def _announce_when_wanted(self) -> None:
        """What no settling call will publish (a call parked by `--on-budget pause` waits
        unanswered; pauses and resumes): published as soon as it is queued."""
        while True:
            await self._announce_wanted.wait()
            self._announce_wanted = anyio.Event()
            await self.announce()

    def _want_announce(self) -> None:
        self._announce_wanted.set()

    async def _stop_exhausted(self) -> None:
        async with self._stop_receive:
            async for agent_id in self._stop_receive:
                try:
                    await self.supervisor.stop(agent_id, 10.0, reason="budget")
                except Exception:
                    log.exception("could not stop agent %s after budget exhaustion", agent_id)

    async def _persist_resets(self) -> None:
        """A window reset is written (so it survives a restart) and announced."""
        async with self._resets_receive:
            async for scope in self._resets_receive:
                if not await self.books.save_scope(scope):
                    log.error("could not save the window reset of %s", scope.key)
                reset = BudgetWindowReset(agent_id=scope.agent_id, **scope.describe())
                await self.bus.publish(reset)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def drain(self) -> None:
        """Wait until the database holds every call settled before this: their books (the
        journal's writes) and their events. The daemon's reads await it first."""
        await self.books.drain()
        await self.outbox.drain()

    def after_answer(self, flow: Flow) -> None:
        """The work the policies left for after the answer (`Flow.later`: a PII scan that
        only detects), and the events it reported, published as the settlement's are."""
        events = flow.events
        reported = len(events)
        flow.run_afterwards()
        if len(events) > reported:
            self._publish(flow, events[reported:])

    def _publish(self, flow: Flow, events: list[Event]) -> None:
        gov = flow.agent
        for event in events:
            event.agent_id = gov.agent_id
            event.agent_name, event.project = gov.name or None, gov.project
            self.outbox.put(event)

    async def settle(self, flow: Flow) -> None:
        """Close the call's books, once: charge, release the hold, commit, announce."""
        if flow.settled:
            return
        flow.settled = True
        gov = flow.agent
        try:
            charge(flow, self.pricer)
        except Exception as exc:  # never leave a hold behind: charge the reservation
            log.exception("could not price a call of agent %s", gov.agent_id)
            flow.usage = None
            held = nanos_to_usd(flow.hold.nanos) if flow.hold is not None else 0.0
            flow.cost_usd = None if flow.unpriced else held
            flow.error = (
                f"{flow.error + '; ' if flow.error else ''}pricing failed "
                f"({type(exc).__name__}): charged the reservation"
            )
        self.pipeline.complete(flow)
        if flow.failed_policy is not None and flow.status_code < 500:
            # A `complete` hook raised: the agent gets a 500, and so does the trace.
            flow.status_code = 500
            note = f"policy '{flow.failed_policy}' failed; the response was withheld"
            flow.error = f"{flow.error}; {note}" if flow.error else note
        gov.spent_usd += flow.cost_usd or 0.0  # unknown (None) adds nothing it could not know
        usage = flow.usage
        gov.llm_calls += 1
        if usage is not None:
            gov.input_tokens += usage.input_tokens
            gov.output_tokens += usage.output_tokens
        if flow.status_code >= 400 or flow.error or flow.refusal is not None:
            gov.errors += 1
        answered = flow.response_model
        model = answered if answered and is_snapshot(answered, flow.model) else flow.model
        now = time.monotonic()
        refusal = flow.refusal
        refused = (
            refusal is not None
            and flow.upstream_status is None
            and (flow.upstream_failure in (None, "connect"))
        )
        trace = Trace(
            id=0,
            agent_id=gov.agent_id,
            provider=flow.provider,
            model=model or "",
            endpoint=flow.endpoint,
            stream=flow.stream,
            status_code=flow.status_code or (flow.refusal.status if flow.refusal else 0),
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cached_tokens=usage.cached_tokens if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0,
            cost_usd=flow.cost_usd,
            latency_ms=round((now - flow.started) * 1000, 3),
            ttfb_ms=round((flow.ttfb - flow.started) * 1000, 3) if flow.ttfb else None,
            error=flow.error,
            started_at=wall_clock(time.time() - (now - flow.started)),
            agent_name=gov.name,
            project=gov.project,
            pid=gov.pid,
            response_model=answered,
            refusal=(refusal.code or refusal.policy or "refused") if refused and refusal else None,
            overhead_ms=overhead_ms(flow, now),
        )
        await self.books.record(trace, gov.spent_usd, gov.scopes if flow.hold is not None else ())
        for observe in self.observers:
            try:
                observe(trace, flow)
            except Exception:  # an exporter's bug must never fail a call
                log.exception("call observer %r failed", observe)
        self._publish(flow, flow.events)  # stored behind the answer (outbox.py)
        await self.announce()  # what this call's settle or refusal announced, and before
        if flow.stop_agent:
            try:
                self._stop_requests.send_nowait(gov.agent_id)
            except anyio.WouldBlock:
                log.warning("stop queue full; agent %s not stopped", gov.agent_id)
