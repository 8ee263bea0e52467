"""A model with no known price, in the budget policy, the charging rule and admission:
unmetered (cost unknown) where no scope has a budget, refused where one has."""

from __future__ import annotations

import anyio
import pytest

from ironrt.governance.admission import Admitter
from ironrt.governance.charging import charge
from ironrt.governance.flow import Flow, TokenUsage
from ironrt.governance.ledger import Hold, Ledger, Outcome
from ironrt.governance.output_limits import OutputLimits
from ironrt.governance.pricing import Pricer, UnknownPrice
from ironrt.policies.budget import BudgetPolicy
from ironrt.testing import tagent, tflow

UNPRICED = "acme-llm-1"


class Setup:
    def __init__(self) -> None:
        self.ledger = Ledger()
        self.pricer = Pricer()
        self.policy = BudgetPolicy(self.pricer, OutputLimits(), self.ledger)
        self.own = self.ledger.scope("agent:a1")
        self.project = self.ledger.scope("project:p")
        self.glob = self.ledger.scope("global")
        self.gov = tagent(ledger=self.ledger, project="p")
        assert self.gov.scopes == (self.own, self.project, self.glob)

    def flow(self, model: str = UNPRICED) -> Flow:
        flow = tflow(model=model, agent=self.gov, input_bound=40)
        self.policy.request(flow)
        return flow


def test_without_any_budget_the_call_is_unpriced_and_announced_once_per_model() -> None:
    s = Setup()
    first, second = s.flow(), s.flow()
    assert first.refusal is None and first.unpriced and first.claim is not None
    assert first.claim.price(10_000, 10_000) == 0  # holds nothing: there is no price
    assert [e.kind for e in first.events] == ["PriceUnknown"]
    assert first.events[0].provider == "openai"
    assert first.events[0].model == UNPRICED
    assert second.unpriced and second.events == []  # once per model, not per call
    other = s.flow("acme-llm-2")
    assert [e.model for e in other.events] == ["acme-llm-2"]
    priced = s.flow("gpt-4o-mini")
    assert not priced.unpriced and priced.events == []


@pytest.mark.parametrize("scope", ["agent:a1", "project:p", "global"])
def test_a_budget_in_any_scope_refuses_it_naming_model_scope_and_remedy(scope: str) -> None:
    s = Setup()
    s.ledger.set_limits(s.ledger.scope(scope), {"budget_usd": 1.0})
    flow = s.flow()
    assert flow.refusal is not None and flow.claim is None and flow.events == []
    assert (flow.refusal.status, flow.refusal.code) == (400, "model_price_unknown")
    message = flow.refusal.message
    assert f"'{UNPRICED}'" in message and scope in message
    assert "$IRONRT_HOME/prices.toml" in message and "input_mtok" in message


def test_an_unpriced_call_costs_unknown_when_billed_and_nothing_when_refused() -> None:
    s = Setup()
    answered = s.flow()
    answered.usage = TokenUsage(input_tokens=12, output_tokens=30)
    answered.upstream_status = 200
    charge(answered, s.pricer)
    assert answered.cost_usd is None and answered.usage is not None  # tokens kept
    cut = s.flow()  # a 2xx answer whose usage never came: may have been billed
    cut.upstream_status = 200
    cut.hold = Hold((), 0)
    charge(cut, s.pricer)
    assert cut.cost_usd is None and cut.error is None
    refused = s.flow()  # the provider's own 4xx: cannot have been billed
    refused.upstream_status = 400
    charge(refused, s.pricer)
    assert refused.cost_usd == 0.0
    lying = s.flow()
    lying.usage = TokenUsage(input_tokens=-5, output_tokens=3)
    lying.upstream_status = 200
    charge(lying, s.pricer)
    assert lying.cost_usd is None and "cost unknown" in (lying.error or "")


async def test_settling_an_unknown_cost_moves_no_spend_and_releases_the_hold() -> None:
    s = Setup()
    flow = s.flow()
    assert flow.claim is not None
    admission = await s.ledger.admit(flow.claim, timeout=1)
    assert admission.hold is not None
    flow.hold = admission.hold
    flow.cost_usd = None
    s.policy.complete(flow)
    for scope in (s.own, s.project, s.glob):
        assert (scope.spent_nanos, scope.held_nanos, scope.in_flight) == (0, 0, 0)


async def test_a_budget_set_while_an_unpriced_call_waits_refuses_it() -> None:
    s = Setup()
    s.ledger.set_limits(s.own, {"max_concurrent": 1})
    busy = s.flow("gpt-4o-mini")
    assert busy.claim is not None
    first = await s.ledger.admit(busy.claim, timeout=1)
    assert first.outcome is Outcome.ADMITTED and first.hold is not None

    async def no_count(flow: Flow) -> int | None:
        return None

    admitter = Admitter(s.ledger, no_count, timeout=5)
    waiting = s.flow()
    async with anyio.create_task_group() as tg:
        tg.start_soon(admitter.admit, waiting)
        await anyio.sleep(0.05)
        assert s.own.waiting == 1
        s.ledger.set_limits(s.project, {"budget_usd": 1.0})
        s.ledger.settle(first.hold, 0)  # the slot frees: the unpriced call is let in...
    assert waiting.refusal is not None and waiting.refusal.code == "model_price_unknown"
    assert "project:p" in waiting.refusal.message
    assert waiting.hold is None  # ...and refused at once, holding nothing
    assert all(sc.in_flight == 0 and sc.held_nanos == 0 for sc in (s.own, s.project, s.glob))


def test_an_unknown_price_is_remembered_like_a_price() -> None:
    """genai-prices takes milliseconds to find nothing: an agent allowed to call an
    unpriced model in a loop must not pay that on every call."""
    pricer = Pricer()
    for _ in range(2):
        with pytest.raises(UnknownPrice, match=r"prices\.toml"):
            pricer.check("openai", UNPRICED)
    assert pricer._cache[("openai", UNPRICED)][1] is None
