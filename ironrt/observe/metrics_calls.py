"""The call counters and histograms of `Metrics` as Prometheus metric families.

Imported only when the registry is built (the first scrape, `Metrics.registry`): the
counting itself (`Metrics.observe`) is plain numbers and needs nothing from
prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ironrt.observe.metrics import AGENT_LABELS, CALL_LABELS, TOKEN_TYPES

if TYPE_CHECKING:
    from ironrt.observe.metrics import Metrics

__all__ = ["CallCollector"]


class CallCollector(Collector):
    """The call counters and histograms as metric families, built at scrape time from
    the plain numbers `Metrics.observe` keeps."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self.m
        calls = CounterMetricFamily(
            "ironrt_llm_calls",
            "LLM calls settled by the router (status: ok, error, or refused by ironrt "
            "before any provider answered)",
            labels=[*CALL_LABELS, "status"],
        )
        cost = CounterMetricFamily(
            "ironrt_llm_cost_usd",
            "Cost of LLM calls in US dollars, as charged to the budgets",
            labels=list(CALL_LABELS),
        )
        tokens = CounterMetricFamily(
            "ironrt_llm_tokens",
            "Tokens of LLM calls by type (input, output, cached, reasoning), as the "
            "provider reported them",
            labels=[*CALL_LABELS, "type"],
        )
        ratelimited = CounterMetricFamily(
            "ironrt_ratelimit_refusals",
            "Calls refused by a rate limit (rpm or tpm) of the agent or one of its scopes",
            labels=list(AGENT_LABELS),
        )
        pii = CounterMetricFamily(
            "ironrt_pii_findings",
            "PII findings in prompts and answers, by type and by what was done "
            "(detected, redacted, blocked)",
            labels=[*AGENT_LABELS, "type", "action"],
        )
        for key, agent in list(m._agents.items()):
            for (provider, model), s in agent.models.items():
                labels = [*key, provider, model]
                calls.add_metric([*labels, "ok"], s.ok)
                calls.add_metric([*labels, "error"], s.error)
                calls.add_metric([*labels, "refused"], s.refused)
                cost.add_metric(labels, s.cost)
                for kind, n in zip(TOKEN_TYPES, s.tokens, strict=True):
                    tokens.add_metric([*labels, kind], n)
            if agent.ratelimited:
                ratelimited.add_metric(list(key), agent.ratelimited)
            for (type_, action), n in agent.pii.items():
                pii.add_metric([*key, type_, action], n)
        yield from (calls, cost, tokens, ratelimited, pii)
        duration = HistogramMetricFamily(
            "ironrt_llm_request_duration_seconds",
            "Latency of LLM calls as the agent saw them, from request to the end of the answer",
            labels=["provider", "model"],
        )
        ttfb = HistogramMetricFamily(
            "ironrt_llm_time_to_first_byte_seconds",
            "Time from the request to the first byte of the provider's answer",
            labels=["provider", "model"],
        )
        for pair, (whole, first) in list(m._latency.items()):
            duration.add_metric(list(pair), whole.buckets(), whole.total)
            ttfb.add_metric(list(pair), first.buckets(), first.total)
        overhead = HistogramMetricFamily(
            "ironrt_router_overhead_seconds",
            "Time the router itself added to a call: its latency minus the time spent "
            "waiting on the upstream (calls that reached no upstream are not counted)",
        )
        overhead.add_metric([], m._overhead.buckets(), m._overhead.total)
        yield from (duration, ttfb, overhead)
