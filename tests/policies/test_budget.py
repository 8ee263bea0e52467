"""BudgetPolicy through a real `Ledger`: the claim it puts on a flow, what it refuses before
anything is held, how admission holds, clamps or refuses the claim, and how `complete`
turns the hold into spend (once) in every scope."""

from __future__ import annotations

from typing import Any

import pytest
from genai_prices import data_snapshot

from ironrt.governance.admission import Admitter
from ironrt.governance.flow import Flow
from ironrt.governance.ledger import Ledger, Scope, usd_to_nanos
from ironrt.governance.output_limits import OutputLimits
from ironrt.governance.pricing import Pricer, UnknownPrice
from ironrt.policies.budget import BudgetPolicy, _integer_bound
from ironrt.testing import tagent, tflow


async def no_count(flow: Flow) -> int | None:
    """The provider's exact count is unavailable: the byte bound stands."""
    return None


class Books:
    """One agent (`agent:a1`, then `global`) under a budget, its policy and its ledger."""

    def __init__(self, budget_usd: float | None = 5.0, **agent: Any) -> None:
        self.ledger = Ledger()
        self.policy = BudgetPolicy(Pricer(), OutputLimits(), self.ledger)
        limits = {} if budget_usd is None else {"budget_usd": budget_usd}
        self.agent = tagent(ledger=self.ledger, **limits, **agent)
        self.admitter = Admitter(self.ledger, no_count, timeout=1.0)

    @property
    def own(self) -> Scope:
        return self.ledger.scope("agent:a1")

    @property
    def glob(self) -> Scope:
        return self.ledger.scope("global")

    def request(self, *args: Any, **kw: Any) -> Flow:
        flow = tflow(*args, agent=self.agent, **kw)
        self.policy.request(flow)
        return flow

    async def admitted(self, *args: Any, **kw: Any) -> Flow:
        flow = self.request(*args, **kw)
        assert flow.refusal is None, flow.refusal
        await self.admitter.admit(flow)
        return flow

    def books(self) -> list[tuple[str, int, int, int]]:
        return [(s.key, s.spent_nanos, s.held_nanos, s.in_flight) for s in (self.own, self.glob)]


# ---- the claim ------------------------------------------------------------------------------


def test_without_max_tokens_the_output_bound_is_the_models_max_output() -> None:
    flow = Books().request()
    assert flow.refusal is None and flow.claim is not None
    assert flow.claim.output_tokens == 16_384  # gpt-4o-mini's max output, not its context
    assert flow.claim.input_tokens == flow.input_bound
    assert flow.claim.countable and flow.output_cap is None
    assert flow.claim.scopes == flow.agent.scopes


def test_the_requests_own_max_tokens_and_n_bound_the_output() -> None:
    body = {"model": "gpt-4o-mini", "messages": [], "max_tokens": 300, "n": 3}
    flow = Books().request(body=body)
    assert flow.claim is not None
    assert (flow.claim.output_tokens, flow.claim.choices, flow.output_cap) == (300, 3, 300)
    assert flow.claim.min_output == 1


def test_anthropic_max_tokens_is_the_bound() -> None:
    flow = Books().request("anthropic")  # tflow's body asks max_tokens=256
    assert flow.claim is not None and flow.claim.output_tokens == 256


def test_embeddings_claim_no_output() -> None:
    flow = Books().request(endpoint="embeddings")
    assert flow.claim is not None
    assert (flow.claim.output_tokens, flow.claim.min_output) == (0, 0)
    assert not flow.claim.countable  # no exact count for embeddings


@pytest.mark.parametrize(
    ("provider", "endpoint"), [("openai", "models"), ("anthropic", "messages.count_tokens")]
)
def test_free_endpoints_claim_nothing(provider: Any, endpoint: Any) -> None:
    flow = Books().request(provider, endpoint)
    assert flow.claim is None and flow.refusal is None


def test_an_agent_without_scopes_claims_nothing() -> None:
    flow = tflow(scopes=())
    BudgetPolicy(Pricer(), OutputLimits(), Ledger()).request(flow)
    assert flow.claim is None and flow.refusal is None


def test_on_budget_pause_parks_instead_of_refusing() -> None:
    flow = Books(on_budget="pause").request()
    assert flow.claim is not None and flow.claim.park


@pytest.mark.parametrize(
    "extra",
    [
        {"max_tokens": -10_000_000},
        {"max_tokens": 0},
        {"max_tokens": 2.5},
        {"max_completion_tokens": 10**8},
        {"n": 0},
        {"n": True},
    ],
)
def test_impossible_limits_are_refused_before_a_claim(extra: dict[str, Any]) -> None:
    flow = Books().request(body={"model": "gpt-4o-mini", "messages": [], **extra})
    assert flow.claim is None and flow.refusal is not None
    assert (flow.refusal.status, flow.refusal.code, flow.refusal.policy) == (
        400,
        "invalid_max_tokens",
        "budget",
    )


def test_an_unpriced_model_is_refused_only_under_a_budget() -> None:
    refused = Books().request(model="my-own-finetune")
    assert refused.refusal is not None
    assert (refused.refusal.status, refused.refusal.code) == (400, "model_price_unknown")
    free = Books(budget_usd=None).request(model="my-own-finetune")
    assert free.refusal is None and free.claim is not None and free.unpriced
    assert free.claim.price(1000, 1000) == 0 and not free.claim.countable
    assert [e.kind for e in free.events] == ["PriceUnknown"]


# ---- admission and settlement through the ledger ---------------------------------------------


async def test_an_admitted_call_holds_its_bound_in_every_scope_until_complete() -> None:
    b = Books()
    flow = await b.admitted()
    assert flow.claim is not None and flow.hold is not None and flow.refusal is None
    bound = flow.claim.cost(flow.claim.output_tokens)
    assert bound > 0 and flow.hold.nanos == bound and flow.hold.clamped_to is None
    assert b.books() == [("agent:a1", 0, bound, 1), ("global", 0, bound, 1)]
    flow.cost_usd = 0.000123
    b.policy.complete(flow)
    spent = usd_to_nanos(0.000123)
    assert b.books() == [("agent:a1", spent, 0, 0), ("global", spent, 0, 0)]
    b.policy.complete(flow)  # settled once: a second complete moves nothing
    assert b.books() == [("agent:a1", spent, 0, 0), ("global", spent, 0, 0)]


async def test_complete_of_a_failed_call_releases_the_hold_and_spends_nothing() -> None:
    b = Books()
    flow = await b.admitted()
    flow.cost_usd = 0.0  # charging found nothing billed (a connect failure)
    b.policy.complete(flow)
    assert b.books() == [("agent:a1", 0, 0, 0), ("global", 0, 0, 0)]


def test_complete_of_a_call_refused_before_admission_touches_nothing() -> None:
    b = Books()
    flow = b.request(body={"model": "gpt-4o-mini", "messages": [], "max_tokens": 0})
    b.policy.complete(flow)
    assert flow.hold is None and b.books() == [("agent:a1", 0, 0, 0), ("global", 0, 0, 0)]


async def test_a_call_that_does_not_fit_whole_is_clamped_to_what_the_budget_affords() -> None:
    b = Books(budget_usd=0.005)  # 16 384 output tokens of gpt-4o-mini cost ~$0.0098
    flow = await b.admitted()
    hold, body = flow.hold, flow.body
    assert hold is not None and hold.clamped_to is not None and body is not None
    assert 1 <= hold.clamped_to < 16_384
    assert body["max_completion_tokens"] == hold.clamped_to == flow.output_cap
    assert flow.body_changed
    assert hold.nanos <= usd_to_nanos(0.005)
    (clamped,) = [e for e in flow.events if e.kind == "BudgetClamped"]
    assert clamped.max_output_tokens == hold.clamped_to
    assert clamped.asked == 16_384


async def test_a_spent_budget_refuses_with_a_402_naming_the_scope_and_the_remedy() -> None:
    b = Books(budget_usd=0.01)
    first = await b.admitted(body={"model": "gpt-4o-mini", "messages": [], "max_tokens": 10})
    first.cost_usd = 0.01
    b.policy.complete(first)
    assert [e.kind for e in b.ledger.announcements] == [
        "BudgetWarning",
        "BudgetWarning",
        "BudgetWarning",
        "BudgetExhausted",
    ]
    assert [e.event.threshold_percent for e in b.ledger.announcements] == [50, 80, 95, 100]
    refused = await b.admitted()
    r = refused.refusal
    assert r is not None and refused.hold is None
    assert (r.status, r.type, r.code, r.policy) == (
        402,
        "insufficient_quota",
        "budget_exhausted",
        "budget",
    )
    assert "agent:a1" in r.message and "`ironrt budget a1 <usd>`" in r.message
    assert not refused.stop_agent  # on_budget "block": refused, the agent runs on
    assert b.books() == [
        ("agent:a1", usd_to_nanos(0.01), 0, 0),
        ("global", usd_to_nanos(0.01), 0, 0),
    ]


async def test_on_budget_stop_stops_the_agent_whose_call_exhausted_the_budget() -> None:
    b = Books(budget_usd=0.01, on_budget="stop")
    under = await b.admitted(body={"model": "gpt-4o-mini", "messages": [], "max_tokens": 10})
    under.cost_usd = 0.004
    b.policy.complete(under)
    assert not under.stop_agent  # a warning, not exhaustion
    last = await b.admitted(body={"model": "gpt-4o-mini", "messages": [], "max_tokens": 10})
    last.cost_usd = 0.006
    b.policy.complete(last)
    assert last.stop_agent


async def test_a_project_budget_binds_the_agent_too() -> None:
    ledger = Ledger()
    ledger.set_limits(ledger.scope("project:p"), {"budget_usd": 0.001})
    policy = BudgetPolicy(Pricer(), OutputLimits(), ledger)
    flow = tflow(ledger=ledger, project="p")  # no budget of its own
    policy.request(flow)
    await Admitter(ledger, no_count, timeout=1.0).admit(flow)
    assert flow.hold is not None and flow.hold.clamped_to is not None
    assert ledger.scope("project:p").held_nanos == flow.hold.nanos <= usd_to_nanos(0.001)


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
