"""The router as a daemon service: the pipeline, the upstream clients, and the books.

Settling a call is the one place where money is counted: the call's usage is priced, the
policies' `complete` hooks run (the budget turns its reservation into spend), and the trace
row and the agent's new spend are committed in one transaction, before the call's handler
returns. A daemon killed right after an agent saw its answer has that answer's cost on
disk.
"""

from __future__ import annotations

import logging
import os
import time
from decimal import Decimal
from typing import TYPE_CHECKING

import anyio

from ironrt.config import Settings
from ironrt.events import EventBus, utcnow
from ironrt.keys import ProviderKeys
from ironrt.policies.base import Policy
from ironrt.policies.breaker import CircuitBreakerPolicy
from ironrt.policies.budget import BudgetPolicy
from ironrt.policies.pii import PiiPolicy
from ironrt.policies.ratelimit import RateLimitPolicy
from ironrt.policies.retry import RetryPolicy
from ironrt.policies.settings import ReliabilitySettings
from ironrt.protocol import Trace
from ironrt.router.app import RouterApp, RouterConfig
from ironrt.router.flow import Flow
from ironrt.router.governance import AgentGovernance
from ironrt.router.pipeline import Pipeline
from ironrt.router.pricing import Pricer, UnknownPrice, load_configured
from ironrt.router.recorder import Recorder
from ironrt.router.upstream import Upstream
from ironrt.store.db import Database

if TYPE_CHECKING:
    from ironrt.supervisor.supervisor import Supervisor

log = logging.getLogger("ironrt.router")


def build_policies(pricer: Pricer, reliability: ReliabilitySettings) -> list[Policy]:
    """The ordered pipeline: budget → safety → reliability. A new policy is one line here.

    The retry policy comes after the breaker: it reads the breaker's verdict on the same
    attempt before deciding to try again.
    """
    return [
        BudgetPolicy(pricer),
        PiiPolicy(),
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
        supervisor: Supervisor,
        keys: ProviderKeys,
    ) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.supervisor = supervisor
        self.keys = keys
        self.governance: dict[str, AgentGovernance] = {}
        self.pricer = Pricer(load_configured(settings.home / "prices.toml"))
        self.recorder = Recorder(db)
        self.reliability = ReliabilitySettings.from_env(os.environ)
        self.pipeline = Pipeline(build_policies(self.pricer, self.reliability))
        self.upstream = Upstream(self.reliability)
        config = RouterConfig(
            offline=settings.offline,
            base_urls={
                "openai": settings.openai_base_url,
                "anthropic": settings.anthropic_base_url,
            },
            keys=self._key_for,
        )
        self.app = RouterApp(
            config, self.pipeline, self.upstream, supervisor.governance_for_token, self.settle
        )
        self._stop_requests, self._stop_receive = anyio.create_memory_object_stream[str](100)

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
            tg.start_soon(self.recorder.run)
            await self._stop_exhausted()

    async def _stop_exhausted(self) -> None:
        async with self._stop_receive:
            async for agent_id in self._stop_receive:
                try:
                    await self.supervisor.stop(agent_id, 10.0)
                except Exception:
                    log.exception("could not stop agent %s after budget exhaustion", agent_id)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def settle(self, flow: Flow) -> None:
        gov = flow.agent
        if flow.usage is not None and flow.endpoint not in ("unmetered",):
            flow.cost_usd = self._price(flow)
        elif flow.usage is None and flow.committed and flow.metadata.get("budget"):
            # Paid for but never told how much (stream cut before its usage): charge the
            # reservation, the upper bound, rather than nothing.
            flow.cost_usd = float(flow.metadata["budget"])
            flow.error = (flow.error or "") + "; usage unknown: charged the reserved upper bound"
        self.pipeline.complete(flow)
        usage = flow.usage
        gov.llm_calls += 1
        if usage is not None:
            gov.input_tokens += usage.input_tokens
            gov.output_tokens += usage.output_tokens
        if flow.status_code >= 400 or flow.error:
            gov.errors += 1
        now = time.monotonic()
        trace = Trace(
            id=0,
            agent_id=gov.agent_id,
            provider=flow.provider,
            model=flow.model or "",
            endpoint=flow.endpoint,
            stream=flow.stream,
            status_code=flow.status_code,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cached_tokens=usage.cached_tokens if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0,
            cost_usd=flow.cost_usd,
            latency_ms=round((now - flow.started) * 1000, 3),
            ttfb_ms=round((flow.ttfb - flow.started) * 1000, 3) if flow.ttfb else None,
            error=flow.error,
            started_at=utcnow(),
        )
        await self.recorder.record(trace, gov.spent_usd)
        for event in flow.events:
            await self.bus.publish(event.kind, gov.agent_id, **event.data)
        if flow.metadata.get("stop_agent"):
            try:
                self._stop_requests.send_nowait(gov.agent_id)
            except anyio.WouldBlock:
                log.warning("stop queue full; agent %s not stopped", gov.agent_id)

    def _price(self, flow: Flow) -> float:
        assert flow.usage is not None
        try:
            cost = self.pricer.cost(flow.provider, flow.model, flow.usage)
        except UnknownPrice:
            requested = flow.adapter.request_model(flow.endpoint, flow.body or {})
            try:
                cost = self.pricer.cost(flow.provider, requested, flow.usage)
            except UnknownPrice:
                return float(flow.metadata.get("budget", 0.0))
        return float(cost.quantize(Decimal("0.000000001")))
