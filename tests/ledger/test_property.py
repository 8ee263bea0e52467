"""A property of the books: whatever happens to calls, holds return to 0, spend equals the
sum of what was charged, and no budget is exceeded, in every scope.

Calls go through the real budget policy (bounds, claim), the real ledger (admission with
a zero wait, so a call that would wait is refused), the real charging rule and the policy's
settlement, in a random interleaving of starts and random outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from ironrt.governance.agent import AgentGovernance
from ironrt.governance.charging import charge
from ironrt.governance.flow import Flow, TokenUsage
from ironrt.governance.ledger import Ledger, usd_to_nanos
from ironrt.governance.output_limits import OutputLimits
from ironrt.governance.pricing import Pricer
from ironrt.policies.budget import BudgetPolicy
from ironrt.providers.openai import OpenAIAdapter

OUTCOMES = ("success", "upstream_error", "timeout", "disconnect", "connect")


@dataclass
class Step:
    agent: int
    input_tokens: int
    max_tokens: int | None
    outcome: str
    status: int
    used: float
    settle_now: bool


steps = st.lists(
    st.builds(
        Step,
        agent=st.integers(0, 2),
        input_tokens=st.integers(1, 5_000),
        max_tokens=st.one_of(st.none(), st.integers(1, 4_000)),
        outcome=st.sampled_from(OUTCOMES),
        status=st.sampled_from([302, 400, 429, 500, 503, 504]),
        used=st.floats(0, 1),
        settle_now=st.booleans(),
    ),
    max_size=40,
)


def run_scenario(calls: list[Step], budgets: tuple[float, float, float]) -> list[tuple[str, float]]:
    """Runs the calls; returns (outcome, cost charged) of each admitted call."""
    ledger = Ledger()
    pricer = Pricer()
    policy = BudgetPolicy(pricer, OutputLimits(), ledger)
    project = ledger.scope("project:p")
    ledger.set_limits(project, {"budget_usd": budgets[2]})
    agents = []
    for n in range(3):
        own = ledger.scope(f"agent:a{n}")
        ledger.set_limits(own, {"budget_usd": budgets[n]})
        scopes = (own, project, ledger.scope("global")) if n < 2 else (own, ledger.scope("global"))
        agents.append(AgentGovernance(f"a{n}", scopes=scopes))
    charged: dict[str, int] = {key: 0 for key in ledger.scopes}
    in_flight: list[tuple[Flow, Step]] = []
    costs: list[tuple[str, float]] = []

    def settle(flow: Flow, step: Step) -> None:
        claim, hold = flow.claim, flow.hold
        assert claim is not None and hold is not None
        if step.outcome == "success":
            cap = hold.clamped_to or claim.output_tokens
            flow.upstream_status = flow.status_code = 200
            flow.committed = True
            flow.usage = TokenUsage(
                input_tokens=max(1, int(claim.input_tokens * step.used)),
                output_tokens=int(cap * step.used),
            )
        elif step.outcome == "upstream_error":
            flow.upstream_status = flow.status_code = step.status
        elif step.outcome == "timeout":
            flow.upstream_failure, flow.status_code = "timeout", 504
        elif step.outcome == "disconnect":
            flow.upstream_status, flow.committed = 200, True
        else:
            flow.upstream_failure, flow.status_code = "connect", 502
        charge(flow, pricer)
        policy.complete(flow)
        for scope in hold.scopes:
            charged[scope.key] += usd_to_nanos(flow.cost_usd)
        costs.append((step.outcome, flow.cost_usd))

    async def main() -> None:
        for step in calls:
            body: dict[str, object] = {"model": "gpt-4o-mini", "messages": []}
            if step.max_tokens is not None:
                body["max_tokens"] = step.max_tokens
            gov = agents[step.agent]
            flow = Flow(gov, OpenAIAdapter(), "chat.completions", body, model="gpt-4o-mini")
            flow.input_bound = step.input_tokens
            policy.request(flow)
            assert flow.refusal is None and flow.claim is not None
            flow.claim.exact = True  # no provider to count with here
            admission = await ledger.admit(flow.claim, timeout=0.0)
            if admission.hold is None:
                continue  # refused (exhausted, or would have to wait): nothing held
            flow.hold = admission.hold
            if step.settle_now:
                settle(flow, step)
            else:
                in_flight.append((flow, step))
            for scope in ledger.scopes.values():
                if scope.budget_nanos is not None:
                    assert scope.spent_nanos + scope.held_nanos <= scope.budget_nanos
        for flow, step in in_flight:
            settle(flow, step)

    anyio.run(main)
    for key, scope in ledger.scopes.items():
        assert scope.held_nanos == 0 and scope.in_flight == 0, key
        assert scope.spent_nanos == charged[key], key
        if scope.budget_nanos is not None:
            assert scope.spent_nanos <= scope.budget_nanos, key
    return costs


@settings(max_examples=150, deadline=None)
@given(
    calls=steps,
    budgets=st.tuples(st.floats(0, 0.02), st.floats(0, 0.02), st.floats(0, 0.03)),
)
def test_books_balance_whatever_the_outcomes(
    calls: list[Step], budgets: tuple[float, float, float]
) -> None:
    run_scenario(calls, budgets)


def test_a_scenario_that_charges_every_kind() -> None:
    calls = [
        Step(0, 100, 50, outcome, 500, 0.5, settle_now=n % 2 == 0)
        for n, outcome in enumerate(OUTCOMES * 2)
    ]
    costs = run_scenario(calls, (1.0, 1.0, 1.0))
    assert len(costs) == 10
    by_kind: dict[str, set[bool]] = {}
    for outcome, cost in costs:
        by_kind.setdefault(outcome, set()).add(cost > 0)
    # Billed or maybe billed: charged; refused by the provider or never sent: free.
    assert by_kind == {
        "success": {True},
        "timeout": {True},
        "disconnect": {True},
        "upstream_error": {False},
        "connect": {False},
    }


def _decimal_nanos(value: float) -> int:
    """The reference: the float's decimal form, times 1e9, rounded half up."""
    from decimal import ROUND_HALF_UP, Decimal

    return int((Decimal(repr(value)) * 1_000_000_000).quantize(Decimal(1), ROUND_HALF_UP))


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        # What charging sets: whole nano-dollars as a float.
        st.integers(min_value=-(10**13), max_value=10**13).map(lambda n: n / 1_000_000_000),
        # Anything else, halves of a nano-dollar included.
        st.integers(min_value=-(10**13), max_value=10**13).map(lambda n: (n + 0.5) / 1e9),
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e7, max_value=1e7),
    )
)
def test_usd_to_nanos_without_decimal_gives_what_decimal_gives(value: float) -> None:
    """The float fast path of `usd_to_nanos` (a cost already on the nano-dollar grid)
    never differs from the exact Decimal rounding."""
    assert usd_to_nanos(value) == _decimal_nanos(value)


def test_usd_to_nanos_refuses_what_is_not_an_amount() -> None:
    """Not on the fast path: an infinite or undefined amount raises, as it always did."""
    from decimal import InvalidOperation

    import pytest

    for bad in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises((InvalidOperation, ValueError)):
            usd_to_nanos(bad)
