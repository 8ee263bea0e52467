"""The ledger's budget announcements come out in the order the books reached them: one
settle crossing several thresholds in several scopes, a refusal or a pause after it."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironrt.governance.ledger import Claim, Ledger, Outcome, Scope
from ironrt.governance.ledger.ledger import Announcement, LedgerEvent
from ironrt.governance.ledger.scope import WARN_AT

pytestmark = pytest.mark.anyio


def claim(scopes: tuple[Scope, ...], *, park: bool = False) -> Claim:
    """10 input and up to 100 output tokens at 1 and 10 nano-dollars: a bound of 1010."""
    return Claim("a1", scopes, lambda i, o: i + 10 * o, 10, 100, min_output=1, park=park)


def thresholds(queue: list[Announcement]) -> list[tuple[str, int, str]]:
    return [
        (e.event.scope, e.event.threshold_percent, e.kind)
        for e in queue
        if isinstance(e, LedgerEvent)
    ]


async def test_one_settle_crossing_every_threshold_of_three_scopes_queues_them_in_order() -> None:
    ledger = Ledger()
    scopes = (Scope("agent:a1"), Scope("project:p"), Scope("global"))
    got = await ledger.admit(claim(scopes), timeout=1)
    assert got.hold is not None
    for s in scopes:  # lowered under the call while it was in flight
        ledger.set_limits(s, {"budget_usd": 5e-7})
    returned = ledger.settle(got.hold, 900)
    queued = list(ledger.announcements)
    assert queued == returned  # what the caller acts on is what will be published
    order = [(t, key) for key, t, _ in thresholds(queued)]
    assert order == [(t, s.key) for t in (50, 80, 95, 100) for s in scopes]
    assert [e.kind for e in returned] == ["BudgetWarning"] * 9 + ["BudgetExhausted"] * 3
    assert all(isinstance(e, LedgerEvent) and e.event.agent_id == "a1" for e in queued)
    assert all(s.exhausted for s in scopes)


async def test_a_refusal_after_the_warnings_is_queued_after_them_and_only_once() -> None:
    ledger = Ledger()
    own = Scope("agent:a1", budget_nanos=1100)
    got = await ledger.admit(claim((own,)), timeout=1)
    assert got.hold is not None and got.hold.clamped_to is None
    ledger.settle(got.hold, 1090)  # 99 %: less left than the next call costs at least
    refused = await ledger.admit(claim((own,)), timeout=1)
    assert refused.outcome is Outcome.EXHAUSTED and refused.scope is own
    data = {"refused": True, "threshold_percent": 100, **own.describe()}
    assert ledger.announce_exhausted(own, "a1", data)  # what the router does on a refusal
    assert not ledger.announce_exhausted(own, "a1", data)  # once a window, not once a call
    assert [(t, kind) for _, t, kind in thresholds(list(ledger.announcements))] == [
        (50, "BudgetWarning"),
        (80, "BudgetWarning"),
        (95, "BudgetWarning"),
        (100, "BudgetExhausted"),
    ]


async def test_with_a_publisher_a_pause_waits_for_the_announcements_before_it() -> None:
    """`AgentPaused` (published by whoever pauses the agent) must not precede the
    warnings and the exhaustion that caused it: the pause is delivered in its turn."""
    ledger = Ledger()
    wakes: list[int] = []
    ledger.on_announce = lambda: wakes.append(len(ledger.announcements))
    paused: list[str] = []
    ledger.on_pause = lambda agent_id, scope: paused.append(scope.key)
    own = Scope("agent:a1", budget_nanos=1100)
    first = await ledger.admit(claim((own,), park=True), timeout=1)
    assert first.hold is not None
    outcomes: list[Outcome] = []

    async def second() -> None:
        outcomes.append((await ledger.admit(claim((own,), park=True), timeout=5)).outcome)

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.sleep(0.05)  # waits for the first call's hold
        ledger.settle(first.hold, 1090)  # 99 %: the waiting call can no longer fit: it parks
        await anyio.sleep(0.05)
        queue = list(ledger.announcements)
        assert paused == [] and wakes  # not yet: the warnings come first
        assert [(t, kind) for _, t, kind in thresholds(queue)] == [
            (50, "BudgetWarning"),
            (80, "BudgetWarning"),
            (95, "BudgetWarning"),
            (100, "BudgetExhausted"),
        ]
        [exhausted] = [
            e for e in queue if isinstance(e, LedgerEvent) and getattr(e.event, "paused", False)
        ]
        assert exhausted.event.agent_id == "a1" and own.exhausted  # the supervisor won't repeat it
        deliver = queue[-1]
        assert not isinstance(deliver, LedgerEvent)
        publish(ledger)  # what the daemon's publisher does, in order
        assert paused == ["agent:a1"]
        ledger.set_limits(own, {"budget_usd": 1.0})
    assert outcomes == [Outcome.ADMITTED]


def publish(ledger: Ledger) -> list[LedgerEvent]:
    out: list[LedgerEvent] = []
    while ledger.announcements:
        item = ledger.announcements.popleft()
        if isinstance(item, LedgerEvent):
            out.append(item)
        else:
            deliver: Callable[[], None] = item
            deliver()
    return out


@settings(max_examples=200, deadline=None)
@given(
    budget=st.integers(1, 50_000),
    costs=st.lists(st.integers(0, 20_000), min_size=1, max_size=12),
)
def test_each_threshold_is_announced_once_by_the_settle_that_reaches_it(
    budget: int, costs: list[int]
) -> None:
    """Settle after settle: a threshold is announced by the first settle whose spend
    reaches it (one settle can reach several, a later one the next: 50 % now, 80 % in
    three calls), once a window, in ascending order."""

    async def run() -> None:
        ledger = Ledger()
        own = Scope("agent:a1", budget_nanos=budget)
        spent, announced = 0, []
        for cost in costs:
            got = await ledger.admit(
                Claim("a1", (own,), lambda i, o: 0, 10, 100, min_output=1), timeout=1
            )
            if got.hold is None:  # spent past the budget: refused from here on
                assert got.outcome is Outcome.EXHAUSTED and spent > budget
                break
            before = spent
            spent += cost
            announced = [t for _, t, _ in thresholds(list(ledger.settle(got.hold, cost)))]
            assert announced == [t for t in WARN_AT if before * 100 < t * budget <= spent * 100]
        assert own.warned == {t for t in WARN_AT if t * budget <= spent * 100}

    anyio.run(run)
