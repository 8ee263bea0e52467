"""The gauges of live state, read at scrape time: budgets per scope, agents, circuits.

Imported when the metrics registry is built (the first scrape), not at the daemon's start.

A custom collector reads what the daemon holds in memory (the ledger's scopes, the
supervisor's agents and their last CPU/memory sample, the breaker's circuits) when
Prometheus asks, and yields metric families: nothing is copied or kept between scrapes,
no I/O is done (the sampler walks /proc on its own schedule, `supervisor/sampling.py`).

Agents that ended more than the metrics' agent TTL ago are left out, and so are their own
budget scopes: the same bound on label sets as the counters' (`metrics.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ironrt.governance.ledger.money import NANOS
from ironrt.governance.ledger.scope import parse_iso
from ironrt.observe.metrics import is_live as is_live  # re-exported
from ironrt.pii.recall import RECALL
from ironrt.supervisor.managed import Managed
from ironrt.supervisor.supervisor import Supervisor

__all__ = ["CIRCUIT_STATES", "LiveCollector", "is_live"]

#: `ironrt_circuit_state`'s values.
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}

_AGENT = ["agent", "agent_id", "project"]


def _recall() -> Iterator[Metric]:
    """The PII recall (ironrt/pii/recall.py): what it holds, and how often it spared a scan."""
    held = GaugeMetricFamily(
        "ironrt_pii_recall_bytes",
        "Memory the findings of texts scanned lately take (IRONRT_PII_RECALL_SIZE bounds it)",
    )
    held.add_metric([], RECALL.size)
    limit = GaugeMetricFamily(
        "ironrt_pii_recall_limit_bytes", "IRONRT_PII_RECALL_SIZE: 0 when nothing is recalled"
    )
    limit.add_metric([], RECALL.budget)
    lookups = CounterMetricFamily(
        "ironrt_pii_recall_lookups",
        "Texts looked up before a scan: hit (recalled, not scanned again) or miss",
        labels=["result"],
    )
    lookups.add_metric(["hit"], RECALL.hits)
    lookups.add_metric(["miss"], RECALL.misses)
    yield from (held, limit, lookups)


class LiveCollector(Collector):
    def __init__(
        self,
        supervisor: Supervisor,
        circuits: Callable[[], dict[str, str]],
        agent_ttl: float,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.supervisor = supervisor
        self.circuits = circuits
        self.agent_ttl = agent_ttl
        self._wall_clock = wall_clock

    def describe(self) -> list[Metric]:
        """Nothing to check at registration (the families depend on the state)."""
        return []

    def collect(self) -> Iterator[Metric]:
        now = self._wall_clock()
        shown = [m for m in list(self.supervisor.agents.values()) if self._shown(m, now)]
        yield from self._agents(shown)
        yield from self._budgets(now)
        state = GaugeMetricFamily(
            "ironrt_circuit_state",
            "Circuit breaker of each upstream: 0 closed, 1 half-open, 2 open",
            labels=["circuit"],
        )
        for circuit, name in sorted(self.circuits().items()):
            state.add_metric([circuit], CIRCUIT_STATES.get(name, 2))
        yield state
        yield from _recall()

    def _shown(self, m: Managed, now: float) -> bool:
        if is_live(m):
            return True
        ended = parse_iso(m.record.ended_at)
        return ended is None or now - ended < self.agent_ttl

    def _agents(self, shown: list[Managed]) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "ironrt_agent_up", "1 while the agent's process runs, else 0", labels=_AGENT
        )
        restarts = CounterMetricFamily(
            "ironrt_agent_restarts",
            "Times the agent was started again (by its restart policy or by a person)",
            labels=_AGENT,
        )
        cpu = CounterMetricFamily(
            "ironrt_agent_cpu_seconds",
            "CPU time (user + system) of the agent's process tree at the last sample",
            labels=_AGENT,
        )
        memory = GaugeMetricFamily(
            "ironrt_agent_memory_bytes",
            "Resident memory of the agent's process tree at the last sample (0 once ended)",
            labels=_AGENT,
        )
        for m in shown:
            r = m.record
            labels = [r.name, r.id, r.project or ""]
            running = r.status.live and r.pid is not None
            up.add_metric(labels, 1 if running else 0)
            restarts.add_metric(labels, r.restarts)
            cpu.add_metric(labels, m.sample.cpu_seconds)
            memory.add_metric(labels, m.sample.rss_bytes if running else 0)
        yield from (up, restarts, cpu, memory)

    def _budgets(self, now: float) -> Iterator[Metric]:
        budget = GaugeMetricFamily(
            "ironrt_budget_usd",
            "Budget of a scope (global, project:NAME, agent:ID) in US dollars, per window "
            "if it has one; only scopes with a budget",
            labels=["scope"],
        )
        spent = GaugeMetricFamily(
            "ironrt_budget_spent_usd",
            "Settled spend of a scope's current window (of all time without one), in USD",
            labels=["scope"],
        )
        held = GaugeMetricFamily(
            "ironrt_budget_held_usd",
            "Reserved by calls in flight in a scope, in USD (settled when they end)",
            labels=["scope"],
        )
        leased = GaugeMetricFamily(
            "ironrt_fleet_lease_usd",
            "A shared scope's lease (IRONRT_LEDGER_URL): what this daemon may still spend, "
            "calls in flight included, in USD",
            labels=["scope"],
        )
        own = GaugeMetricFamily(
            "ironrt_fleet_own_spent_usd",
            "This daemon's part of a shared scope's settled spend (the window's), in USD",
            labels=["scope"],
        )
        ledger_up = GaugeMetricFamily(
            "ironrt_fleet_ledger_up",
            "1 while the fleet ledger (PostgreSQL) answers this daemon's syncs, else 0; "
            "per shared scope",
            labels=["scope"],
        )
        agents = self.supervisor.agents
        for scope in self.supervisor.all_scopes():
            owner = agents.get(scope.agent_id) if scope.agent_id else None
            if owner is not None and not self._shown(owner, now):
                continue
            if scope.budget_usd is not None:
                budget.add_metric([scope.key], scope.budget_usd)
            spent.add_metric([scope.key], scope.spent_usd)
            held.add_metric([scope.key], scope.held_usd)
            lease = scope.lease
            if lease is not None:
                leased.add_metric(
                    [scope.key], max(lease.granted_nanos - lease.own_nanos, 0) / NANOS
                )
                own.add_metric([scope.key], lease.own_nanos / NANOS)
                ledger_up.add_metric([scope.key], 1 if lease.available else 0)
        yield from (budget, spent, held)
        if leased.samples or ledger_up.samples:
            yield from (leased, own, ledger_up)
