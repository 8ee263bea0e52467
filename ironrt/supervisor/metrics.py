"""An agent's metrics: its process tree's last sample plus what the router counted."""

from __future__ import annotations

from ironrt.protocol import Agent, Metrics
from ironrt.router.governance import AgentGovernance
from ironrt.supervisor.sampler import TreeSample


def metrics_for(
    r: Agent, g: AgentGovernance, sample: TreeSample | None, uptime_s: float
) -> Metrics:
    remaining = None if g.budget_usd is None else max(g.budget_usd - g.spent_usd, 0.0)
    used = None
    if g.budget_usd:
        used = round(100 * g.spent_usd / g.budget_usd, 2)
    elif g.budget_usd == 0:
        used = 100.0
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
        budget_usd=g.budget_usd,
        budget_remaining_usd=remaining,
        budget_used_percent=used,
        pii_findings=g.pii_findings,
        errors=g.errors,
    )
