"""An agent's metrics: its process tree's last sample plus what the router counted."""

from __future__ import annotations

from ironrt.governance.agent import AgentGovernance
from ironrt.protocol import Agent, Metrics
from ironrt.supervisor.sampler import TreeSample


def budget_use(budget: float | None, spent: float) -> tuple[float | None, float | None]:
    """(remaining USD, percent used) of `budget` against `spent`; (None, None) without one."""
    remaining = None if budget is None else max(budget - spent, 0.0)
    used = None
    if budget:
        used = round(100 * spent / budget, 2)
    elif budget == 0:
        used = 100.0
    return remaining, used


def metrics_for(
    r: Agent, g: AgentGovernance, sample: TreeSample | None, uptime_s: float
) -> Metrics:
    own = g.own
    budget = own.budget_usd if own is not None else None
    # Against the budget: the spend of the agent scope's current window (all time without
    # one); `spent_usd` stays the agent's spend of all time.
    window_spent = own.spent_usd if own is not None else g.spent_usd
    remaining, used = budget_use(budget, window_spent)
    return Metrics(
        id=r.id,
        status=r.status,
        pid=r.pid,
        exit_code=r.exit_code,
        cpu_percent=sample.cpu_percent if sample else 0.0,
        rss_bytes=sample.rss_bytes if sample else 0,
        num_processes=sample.num_processes if sample else 0,
        uptime_s=round(uptime_s, 3),
        restarts=r.restarts,
        llm_calls=g.llm_calls,
        input_tokens=g.input_tokens,
        output_tokens=g.output_tokens,
        spent_usd=round(g.spent_usd, 9),
        budget_usd=budget,
        budget_remaining_usd=remaining,
        budget_used_percent=used,
        pii_findings=g.pii_findings,
        errors=g.errors,
    )
