"""BudgetPolicy alone: the claim it puts on a flow, and what it refuses before anything is
held."""

from __future__ import annotations

from typing import Any

import pytest
from genai_prices import data_snapshot

from ironrt.governance.agent import AgentGovernance
from ironrt.governance.flow import Flow
from ironrt.governance.ledger import Ledger, usd_to_nanos
from ironrt.governance.output_limits import OutputLimits
from ironrt.governance.pricing import Pricer, UnknownPrice
from ironrt.policies.budget import BudgetPolicy, _integer_bound
from ironrt.providers import ANTHROPIC, OPENAI


def flow_for(body: dict[str, Any], *, budget: float | None = 5.0, adapter: Any = OPENAI) -> Flow:
    ledger = Ledger()
    own = ledger.scope("agent:a1")
    if budget is not None:
        ledger.set_limits(own, {"budget_usd": budget})
    gov = AgentGovernance("a1", scopes=(own, ledger.scope("global")))
    endpoint = "messages" if adapter is ANTHROPIC else "chat.completions"
    flow = Flow(gov, adapter, endpoint, body, model=body["model"])
    flow.input_bound = 200
    BudgetPolicy(Pricer(), OutputLimits(), ledger).request(flow)
    return flow


def test_without_max_tokens_the_output_bound_is_the_models_max_output() -> None:
    flow = flow_for({"model": "gpt-4o", "messages": []})
    assert flow.refusal is None and flow.claim is not None
    assert flow.claim.output_tokens == 16_384  # not the 128k context window
    assert flow.claim.countable and flow.output_cap is None


def test_the_requests_own_max_tokens_and_n_bound_the_output() -> None:
    flow = flow_for({"model": "gpt-4o-mini", "messages": [], "max_tokens": 300, "n": 3})
    assert flow.claim is not None
    assert (flow.claim.output_tokens, flow.claim.choices, flow.output_cap) == (300, 3, 300)
    assert flow.claim.min_output == 1


@pytest.mark.parametrize(
    "extra",
    [{"max_tokens": -10_000_000}, {"max_tokens": 0}, {"max_tokens": 2.5}, {"n": 0}, {"n": True}],
)
def test_impossible_limits_are_refused_before_a_claim(extra: dict[str, Any]) -> None:
    flow = flow_for({"model": "gpt-4o-mini", "messages": [], **extra})
    assert flow.claim is None and flow.refusal is not None
    assert (flow.refusal.status, flow.refusal.code) == (400, "invalid_max_tokens")


def test_an_unpriced_model_is_refused_only_under_a_budget() -> None:
    refused = flow_for({"model": "my-own-finetune", "messages": []})
    assert refused.refusal is not None and refused.refusal.code == "model_price_unknown"
    free = flow_for({"model": "my-own-finetune", "messages": []}, budget=None)
    assert free.refusal is None and free.claim is not None
    assert free.claim.price(1000, 1000) == 0 and not free.claim.countable


def test_anthropic_max_tokens_is_the_bound() -> None:
    flow = flow_for(
        {"model": "claude-haiku-4-5", "messages": [], "max_tokens": 64}, adapter=ANTHROPIC
    )
    assert flow.claim is not None and flow.claim.output_tokens == 64


def test_integer_bounds_equal_genai_prices_decimal_bounds() -> None:
    """The hot path prices in integer nano-dollars; it must agree with the Decimal bound
    for every flat-priced model of both providers."""
    pricer = Pricer()
    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        if provider.id not in ("openai", "anthropic"):
            continue
        for model in provider.models:
            try:
                rates = pricer.bound_rates(provider.id, model.id)
            except UnknownPrice:  # listed without a price (fine-tune prefixes)
                continue
            if rates is None:
                continue
            fn = _integer_bound(*rates)
            for inp, out in ((1, 1), (123, 4567), (10**6, 3), (7, 16_384), (999_999, 1)):
                expected = usd_to_nanos(pricer.bound(provider.id, model.id, inp, out), up=True)
                assert fn(inp, out) == expected, (model.id, inp, out)
                checked += 1
    assert checked > 300
