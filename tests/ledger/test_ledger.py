"""The ledger alone: exact admission, FIFO waiting, concurrency caps, windows, pause."""

from __future__ import annotations

import anyio
import pytest

from ironrt.governance.ledger import Claim, Ledger, Outcome, Scope
from ironrt.governance.ledger.money import fmt_usd, usd_to_nanos

pytestmark = pytest.mark.anyio


def linear(per_in: int, per_out: int):  # type: ignore[no-untyped-def]
    """Nano-dollars per input and output token."""
    return lambda i, o: i * per_in + o * per_out


def claim(scopes: tuple[Scope, ...], *, inp: int = 10, out: int = 100, **kw: object) -> Claim:
    return Claim("a1", scopes, linear(1, 10), inp, out, min_output=min(16, out), **kw)  # type: ignore[arg-type]


def budgeted(nanos: int, key: str = "agent:a1") -> Scope:
    return Scope(key, budget_nanos=nanos)


async def test_admits_and_holds_in_every_scope_then_settles_in_each() -> None:
    ledger = Ledger()
    own, project, glob = budgeted(10_000), budgeted(5_000, "project:p"), Scope("global")
    got = await ledger.admit(claim((own, project, glob)), timeout=1)
    assert got.outcome is Outcome.ADMITTED and got.hold is not None
    assert [s.held_nanos for s in (own, project, glob)] == [1010, 1010, 1010]
    ledger.settle(got.hold, 300)
    ledger.settle(got.hold, 300)  # settling twice changes nothing
    assert [(s.held_nanos, s.spent_nanos, s.in_flight) for s in (own, project, glob)] == [
        (0, 300, 0)
    ] * 3


async def test_a_call_that_fits_only_once_holds_settle_waits_for_them() -> None:
    ledger = Ledger()
    own = budgeted(1500)
    first = await ledger.admit(claim((own,)), timeout=1)
    assert first.hold is not None
    results: list[Outcome] = []

    async def second() -> None:
        results.append((await ledger.admit(claim((own,)), timeout=5)).outcome)

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.sleep(0.05)
        assert results == [] and own.waiting == 1  # waiting, not refused
        ledger.settle(first.hold, 200)  # most of the bound was not used
    assert results == [Outcome.ADMITTED]


async def test_exhausted_only_when_spent_plus_the_least_cost_exceeds_the_budget() -> None:
    ledger = Ledger()
    own = budgeted(1000)
    own.spent_nanos = 800
    # bound 10 + 1000 = 1010 > 200 left; least 10 + 160 = 170 fits: clamped, not refused.
    got = await ledger.admit(claim((own,)), timeout=1)
    assert got.outcome is Outcome.ADMITTED and got.hold is not None
    assert got.hold.clamped_to == 19 and got.hold.nanos == 200
    ledger.settle(got.hold, 180)
    refused = await ledger.admit(claim((own,)), timeout=1)
    assert refused.outcome is Outcome.EXHAUSTED and refused.scope is own
    assert refused.least_nanos == 170


async def test_the_byte_bound_asks_for_an_exact_count_before_deciding() -> None:
    ledger = Ledger()
    own = budgeted(1000)
    c = claim((own,), inp=900, countable=True)
    got = await ledger.admit(c, timeout=1)
    assert got.outcome is Outcome.NEED_COUNT
    c.exact, c.input_tokens = True, 50
    got = await ledger.admit(c, timeout=1)
    assert got.outcome is Outcome.ADMITTED and got.hold is not None
    assert got.hold.nanos == 50 + 10 * 95  # clamped to what is left after the exact input


async def test_fifo_per_scope_and_max_concurrent_wait_in_the_same_queue() -> None:
    ledger = Ledger()
    own = Scope("agent:a1", max_concurrent=1)
    order: list[int] = []
    first = await ledger.admit(claim((own,)), timeout=1)
    assert first.hold is not None

    async def call(n: int) -> None:
        got = await ledger.admit(claim((own,)), timeout=5)
        order.append(n)
        assert got.hold is not None
        await anyio.sleep(0.01)
        ledger.settle(got.hold, 1)

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(call, n)
            await anyio.sleep(0.005)
        assert own.waiting == 5 and own.in_flight == 1
        ledger.settle(first.hold, 1)
    assert order == [0, 1, 2, 3, 4] and own.in_flight == 0 and own.spent_nanos == 6


async def test_waiting_too_long_times_out_and_leaves_the_queue() -> None:
    ledger = Ledger()
    own = Scope("agent:a1", max_concurrent=1)
    held = await ledger.admit(claim((own,)), timeout=1)
    got = await ledger.admit(claim((own,)), timeout=0.05)
    assert got.outcome is Outcome.TIMEOUT and own.waiting == 0
    assert held.hold is not None
    ledger.settle(held.hold, 0)
    assert (await ledger.admit(claim((own,)), timeout=0.05)).outcome is Outcome.ADMITTED


async def test_a_cancelled_waiter_gives_back_its_place() -> None:
    ledger = Ledger()
    own = Scope("agent:a1", max_concurrent=1)
    held = await ledger.admit(claim((own,)), timeout=1)
    with anyio.move_on_after(0.05):
        await ledger.admit(claim((own,)), timeout=5)
    assert own.waiting == 0 and own.in_flight == 1
    assert held.hold is not None
    ledger.settle(held.hold, 0)
    assert own.in_flight == 0


async def test_windows_reset_spend_and_rearm_warnings() -> None:
    now = [1000.0]
    ledger = Ledger(clock=lambda: now[0])
    own = budgeted(1000)
    ledger.set_limits(own, {"window": "10s"})
    assert own.resets_at == 1010.0
    got = await ledger.admit(claim((own,), out=90), timeout=1)
    assert got.hold is not None
    events = ledger.settle(got.hold, 900)
    assert [e.event.threshold_percent for e in events] == [50, 80]
    assert (await ledger.admit(claim((own,)), timeout=0.01)).outcome is Outcome.EXHAUSTED
    now[0] = 1035.0  # three windows later: the schedule stays on the grid
    got = await ledger.admit(claim((own,)), timeout=1)
    assert got.outcome is Outcome.ADMITTED and own.spent_nanos == 0
    assert own.resets_at == 1040.0 and own.warned == set()


async def test_pause_parks_the_call_until_the_budget_is_raised() -> None:
    ledger = Ledger()
    paused: list[str] = []
    ledger.on_pause = lambda agent_id, scope: paused.append(f"pause {scope.key}")
    ledger.on_resume = lambda agent_id: paused.append("resume")
    own = budgeted(100)
    results: list[Outcome] = []

    async def call() -> None:
        results.append((await ledger.admit(claim((own,), park=True), timeout=0.01)).outcome)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await anyio.sleep(0.1)  # far past the admission timeout: parked calls do not time out
        assert paused == ["pause agent:a1"] and results == []
        ledger.set_limits(own, {"budget_usd": 0.000005})
    assert results == [Outcome.ADMITTED] and paused == ["pause agent:a1", "resume"]


async def test_cancel_answers_a_stopped_agents_parked_calls() -> None:
    ledger = Ledger()
    own = budgeted(0)
    results: list[Outcome] = []

    async def call() -> None:
        results.append((await ledger.admit(claim((own,), park=True), timeout=1)).outcome)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await anyio.sleep(0.02)
        ledger.cancel("a1")
    assert results == [Outcome.CANCELLED]


def test_allowlists_match_globs() -> None:
    scope = Scope("project:ro", models=("gpt-4o*", "claude-*"))
    assert scope.allows("gpt-4o-mini") and scope.allows("claude-haiku-4-5")
    assert not scope.allows("o3") and Scope("global").allows("anything")


def test_money_is_printed_with_enough_digits() -> None:
    assert fmt_usd(0.00018) == "$0.00018" and fmt_usd(0) == "$0"
    assert fmt_usd(5) == "$5.00" and fmt_usd(0.5) == "$0.50"
    assert usd_to_nanos(0.1 + 0.2) == 300_000_000
