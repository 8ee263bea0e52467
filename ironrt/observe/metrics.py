"""Prometheus metrics of the daemon, in the text exposition `prometheus-client` writes.

Three sources, each read where it is cheapest:

- settled calls (`observe`, one of `RouterService.observers`): counters of calls, cost and
  tokens, histograms of duration, time to first byte and the router's own time. They are
  kept as plain numbers per (agent, project, provider, model) and turned into metric
  families only when scraped (`_CallCollector`): a call costs two dict lookups, a few
  additions and a bisect per histogram (a quarter of the time prometheus_client's Counter
  and Histogram objects took, each behind a lock), no I/O, nothing that could block;
- events (`run` subscribes to the bus): PII findings by type and action, from `PiiAlert`;
- live state read at scrape time (`metrics_live`): budgets, agents, circuits. Nothing is
  copied between scrapes, so a gauge is never stale and costs nothing until asked;
- prometheus_client's own collectors of the daemon's process (`process_*`), its garbage
  collector (`python_gc_*`) and interpreter (`python_info`), as every Python service has.

Everything lives in this object's own `registry`, never prometheus_client's global one:
two daemons in one process (tests), or another library's metrics, never mix. Another part
of the daemon may register its own metric there (`Metrics.registry` is public).

Cardinality is bounded: an agent's label sets go once it has ended and `agent_ttl`
seconds have passed (`prune`, run periodically by `run`; a pass costs one look at each
agent that has series, nothing per call; removing an agent is deleting its one entry).
Histograms carry no agent label at all.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from ironrt.events import EventBus
from ironrt.governance.flow import Flow
from ironrt.protocol import Trace
from ironrt.protocol.events import Event, PiiAlert

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ironrt.supervisor.managed import Managed
    from ironrt.supervisor.supervisor import Supervisor

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_AGENT_TTL_S",
    "DURATION_BUCKETS",
    "OVERHEAD_BUCKETS",
    "Metrics",
]

log = logging.getLogger("ironrt.metrics")

#: What `/metrics` answers with: the classic text format every Prometheus reads
#: (prometheus_client's `CONTENT_TYPE_PLAIN_0_0_4`, spelled out: see `Metrics.registry`).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_AGENT_TTL_S = 3600.0
#: LLM calls: a cached answer in milliseconds, a long reasoning call in minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
#: The router's own time: tens of microseconds when all is well (docs/DESIGN: p50 <= 0.35
#: ms), so the fine buckets are at the bottom; a second means something is wrong.
OVERHEAD_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
)
TOKEN_TYPES = ("input", "output", "cached", "reasoning")
#: The longest pause between two pruning passes.
_PRUNE_EVERY_MAX_S = 60.0

CALL_LABELS = ("agent", "project", "provider", "model")
AGENT_LABELS = ("agent", "project")
AgentKey = tuple[str, str]


def is_live(m: Managed) -> bool:
    """Running, or ended but about to be started again by its restart policy."""
    return m.record.status.live or m.restart_pending


class _Histogram:
    """One histogram's buckets, counted as plain integers (cumulated at scrape time)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == math.inf else repr(float(bound)), float(running)))
        return out


@dataclass(slots=True)
class _Series:
    """One agent's calls on one model: what the call counters show for it."""

    ok: int = 0
    error: int = 0
    refused: int = 0
    cost: float = 0.0
    #: input, output, cached, reasoning (`TOKEN_TYPES`).
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0])


@dataclass(slots=True)
class _AgentSeries:
    """Everything one agent (name, project) has in the counters: removed whole."""

    models: dict[tuple[str, str], _Series] = field(default_factory=dict)
    pii: dict[tuple[str, str], int] = field(default_factory=dict)
    ratelimited: int = 0
    #: When a pruning pass first found it ended (None: live, or not looked at yet).
    ended_since: float | None = None


class Metrics:
    def __init__(
        self,
        supervisor: Supervisor | None = None,
        circuits: Callable[[], dict[str, str]] | None = None,
        *,
        agent_ttl: float = DEFAULT_AGENT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.supervisor = supervisor
        self.agent_ttl = agent_ttl
        self._clock = clock
        self._agents: dict[AgentKey, _AgentSeries] = {}
        self._latency: dict[tuple[str, str], tuple[_Histogram, _Histogram]] = {}
        self._overhead = _Histogram(OVERHEAD_BUCKETS)
        self._circuits = circuits or dict
        self._registry: CollectorRegistry | None = None
        self._extra: list[Callable[[CollectorRegistry], object]] = []

    @property
    def registry(self) -> CollectorRegistry:
        """The collectors, built at the first scrape: counting needs none of them, and
        prometheus_client costs the daemon's start ~25 ms of imports (http.server, email,
        wsgiref come with it) and ~2 MB that a daemon nobody scrapes never needs."""
        if self._registry is None:
            from prometheus_client import (
                CollectorRegistry,
                GCCollector,
                Info,
                PlatformCollector,
                ProcessCollector,
            )

            from ironrt._version import __version__
            from ironrt.observe.metrics_calls import CallCollector
            from ironrt.observe.metrics_live import LiveCollector

            reg = CollectorRegistry(auto_describe=True)
            reg.register(CallCollector(self))
            Info("ironrt", "The daemon's version", registry=reg).info({"version": __version__})
            # What every Python service's /metrics has (prometheus_client's default
            # registry has them; this one is the daemon's own): the daemon's process
            # (CPU, memory, open files), its collector's passes, the interpreter.
            ProcessCollector(registry=reg)
            GCCollector(registry=reg)
            PlatformCollector(registry=reg)
            if self.supervisor is not None:
                reg.register(LiveCollector(self.supervisor, self._circuits, self.agent_ttl))
            self._registry = reg
            for register in self._extra:
                register(reg)
        return self._registry

    def on_registry(self, register: Callable[[CollectorRegistry], object]) -> None:
        """Have `register(registry)` add its own metrics once the registry is built (at
        once if it is): another part of the daemon's metric, at no cost before a scrape."""
        if self._registry is not None:
            register(self._registry)
        else:
            self._extra.append(register)

    # ---- settled calls (RouterService.observers) --------------------------------------
    def observe(self, trace: Trace, flow: Flow) -> None:
        """Count one settled call. On the hot path: lookups and additions only."""
        _ = flow
        agent = self._agent((trace.agent_name or trace.agent_id, trace.project or ""))
        model = (trace.provider, trace.model)
        s = agent.models.get(model)
        if s is None:
            s = agent.models[model] = _Series()
        if trace.refusal is not None:
            s.refused += 1
            if trace.refusal == "rate_limited":
                agent.ratelimited += 1
        elif trace.status_code >= 400 or trace.error:
            s.error += 1
        else:
            s.ok += 1
        if trace.cost_usd:
            s.cost += trace.cost_usd
        tokens = s.tokens
        tokens[0] += trace.input_tokens
        tokens[1] += trace.output_tokens
        tokens[2] += trace.cached_tokens
        tokens[3] += trace.reasoning_tokens
        latency = self._latency.get(model)
        if latency is None:
            latency = self._latency[model] = (
                _Histogram(DURATION_BUCKETS),
                _Histogram(DURATION_BUCKETS),
            )
        latency[0].observe(trace.latency_ms / 1000)
        if trace.ttfb_ms is not None:
            latency[1].observe(trace.ttfb_ms / 1000)
        if trace.overhead_ms is not None:
            self._overhead.observe(trace.overhead_ms / 1000)

    def _agent(self, key: AgentKey) -> _AgentSeries:
        agent = self._agents.get(key)
        if agent is None:
            agent = self._agents[key] = _AgentSeries()
        agent.ended_since = None
        return agent

    # ---- events ----------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Count the findings of a `PiiAlert` (a `PiiBlocked` always comes with one, so it
        is not counted again)."""
        if not isinstance(event, PiiAlert):
            return
        agent = self._agent(self._agent_key(event))
        fallback = event.action or "detected"
        for type_, n in event.counts.items():
            if n > 0:
                found = (type_, event.actions.get(type_, fallback))
                agent.pii[found] = agent.pii.get(found, 0) + n

    def _agent_key(self, event: Event) -> AgentKey:
        """The (name, project) of an event's agent: the event's own fields when it has
        them, else the agent as the supervisor knows it."""
        agent_id = event.agent_id or ""
        name, project = event.agent_name, event.project
        if not name and self.supervisor is not None:
            m = self.supervisor.agents.get(agent_id)
            if m is not None:
                name, project = m.gov.name, m.gov.project
        return (name or agent_id, project or "")

    # ---- cardinality -------------------------------------------------------------------
    def prune(self) -> int:
        """Remove the label sets of agents ended for `agent_ttl` seconds; returns how many
        agents went. An agent counts as ended from the first pass that finds no live agent
        of its name and project."""
        now = self._clock()
        live = self._live_keys()
        gone = 0
        for key, agent in list(self._agents.items()):
            if key in live:
                agent.ended_since = None
            elif agent.ended_since is None:
                agent.ended_since = now
            elif now - agent.ended_since >= self.agent_ttl:
                del self._agents[key]
                gone += 1
        return gone

    def _live_keys(self) -> set[AgentKey]:
        if self.supervisor is None:
            return set()
        return {
            (m.gov.name or m.record.id, m.gov.project or "")
            for m in self.supervisor.agents.values()
            if is_live(m)
        }

    # ---- serving ---------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The text a scrape gets (the live collectors read the daemon's state now)."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)

    async def run(self, bus: EventBus) -> None:
        """Count the bus's PII alerts and prune ended agents, until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._prune_forever)
            async with bus.subscribe() as events:
                async for event in events:
                    try:
                        self.on_event(event)
                    except Exception:  # a malformed event must not end the metrics
                        log.exception("could not count event %s", getattr(event, "kind", "?"))
            tg.cancel_scope.cancel()

    async def _prune_forever(self) -> None:
        every = min(max(self.agent_ttl / 4, 0.05), _PRUNE_EVERY_MAX_S)
        while True:
            await anyio.sleep(every)
            self.prune()
