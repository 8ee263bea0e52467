"""The ledger with leased (fleet-shared) scopes: admission against this daemon's lease.

No database here: a lease is filled by hand, as `ironrt.fleet` would fill it from a sync,
and the clock is the test's, so expiry is exact. What is pinned: a call is admitted
only inside the lease room (granted - own - held), waits and asks for more (`on_want`,
`want_nanos`) when it does not fit, is refused as exhausted only on the fleet's *settled*
spend, and with the database unreachable gets UNAVAILABLE once even its own holds
settling could not make room.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironrt.governance.ledger import Claim, Hold, Ledger, Outcome, Scope
from ironrt.governance.ledger.lease import EXPIRY_MARGIN_S, Lease, lease_target

T0 = 1_700_000_000.0

#: With `claim()` below: bound 10 + 100 * 10 = 1010, least 10 + 16 * 10 = 170.
BOUND, LEAST = 1010, 170


class Clock:
    """The ledger's clock, moved by the test."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def linear(per_in: int, per_out: int) -> Callable[[int, int], int]:
    """Nano-dollars per input and output token."""
    return lambda i, o: i * per_in + o * per_out


def claim(scopes: tuple[Scope, ...], *, inp: int = 10, out: int = 100) -> Claim:
    return Claim("a1", scopes, linear(1, 10), inp, out, min_output=min(16, out))


def leased(
    clock: Clock,
    *,
    granted: int,
    budget: int = 1_000_000,
    others_spent: int = 0,
    ttl: float = 60.0,
    key: str = "project:p",
) -> Scope:
    """A shared scope as a sync leaves it: the fleet's spend known, a lease granted."""
    lease = Lease(granted_nanos=granted, expires_at=clock() + ttl, others_spent_nanos=others_spent)
    return Scope(key, budget_nanos=budget, spent_nanos=others_spent, lease=lease)


class Wants:
    """Counts `Ledger.on_want` calls (the fleet manager's wake-up)."""

    def __init__(self, ledger: Ledger) -> None:
        self.calls = 0
        ledger.on_want = self

    def __call__(self) -> None:
        self.calls += 1


async def until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_a_call_that_fits_the_lease_room_is_admitted_without_asking() -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    wants = Wants(ledger)
    s = leased(clock, granted=3 * BOUND + 500)
    assert s.lease is not None
    s.lease.own_nanos = s.spent_nanos = 400  # room 3 * BOUND + 100: three calls, not four
    holds = []
    for _ in range(3):
        got = await ledger.admit(claim((s,)), timeout=1)
        assert got.outcome is Outcome.ADMITTED and got.hold is not None
        holds.append(got.hold)
    assert s.held_nanos == 3 * BOUND and wants.calls == 0 and s.lease.want_nanos == 0
    late = await ledger.admit(claim((s,)), timeout=0.01)  # 100 of room left
    assert late.outcome is Outcome.TIMEOUT and wants.calls == 1
    assert s.lease.want_nanos == BOUND - 100


@pytest.mark.anyio
async def test_a_call_short_of_lease_waits_asks_once_and_is_admitted_on_a_bigger_grant() -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    wants = Wants(ledger)
    s = leased(clock, granted=BOUND + 200)
    lease = s.lease
    assert lease is not None
    first = await ledger.admit(claim((s,)), timeout=1)
    assert first.hold is not None
    results: list[Outcome] = []

    async def second() -> None:
        results.append((await ledger.admit(claim((s,)), timeout=5)).outcome)

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await until(lambda: s.waiting == 1)
        assert results == [] and wants.calls == 1
        # what the waiting call needs beyond the room: its bound + held - room
        assert lease.want_nanos == BOUND + BOUND - (BOUND + 200) == BOUND - 200
        assert lease.want_bound_nanos == BOUND
        ledger.refresh([s])  # nothing changed: still waiting, and not asked again
        assert results == [] and wants.calls == 1
        lease.granted_nanos = 2 * BOUND  # the fleet manager's sync
        ledger.refresh([s])
    assert results == [Outcome.ADMITTED] and s.held_nanos == 2 * BOUND


@pytest.mark.anyio
async def test_an_expired_lease_admits_nothing() -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    wants = Wants(ledger)
    s = leased(clock, granted=100 * BOUND, ttl=10.0)
    lease = s.lease
    assert lease is not None and lease.expires_at is not None
    clock.now = lease.expires_at - EXPIRY_MARGIN_S - 0.001  # still (just) valid
    got = await ledger.admit(claim((s,)), timeout=1)
    assert got.outcome is Outcome.ADMITTED and got.hold is not None
    ledger.settle(got.hold, 100)
    clock.now = lease.expires_at - EXPIRY_MARGIN_S  # the margin: spent from no more
    assert lease.room(clock()) == 0
    late = await ledger.admit(claim((s,)), timeout=0.01)
    assert late.outcome is Outcome.TIMEOUT and wants.calls == 1
    assert lease.want_nanos == BOUND
    lease.expires_at = None  # never granted
    assert lease.room(clock()) == 0


@pytest.mark.anyio
async def test_unavailable_ledger_lets_a_call_wait_for_own_holds_inside_the_lease() -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    wants = Wants(ledger)
    s = leased(clock, granted=2 * BOUND - 100)
    lease = s.lease
    assert lease is not None
    first = await ledger.admit(claim((s,)), timeout=1)
    assert first.hold is not None
    lease.available = False
    results: list[Outcome] = []

    async def second() -> None:
        results.append((await ledger.admit(claim((s,)), timeout=5)).outcome)

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await until(lambda: s.waiting == 1)  # fits the lease once the first settles
        assert results == [] and wants.calls == 0  # no one to ask
        ledger.settle(first.hold, 50)
    assert results == [Outcome.ADMITTED]
    assert lease.own_nanos == 50 and s.held_nanos == BOUND


@pytest.mark.anyio
async def test_unavailable_ledger_refuses_at_once_what_the_lease_cannot_hold() -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    wants = Wants(ledger)
    s = leased(clock, granted=BOUND + 500)
    lease = s.lease
    assert lease is not None
    lease.own_nanos = s.spent_nanos = 600  # room BOUND - 100, whatever settles
    lease.available = False
    got = await ledger.admit(claim((s,)), timeout=5)
    assert got.outcome is Outcome.UNAVAILABLE and got.scope is s and got.hold is None
    assert got.bound_nanos == BOUND and s.waiting == 0 and wants.calls == 0
    lease.available = True  # back: the same call waits for more lease instead
    back = await ledger.admit(claim((s,)), timeout=0.01)
    assert back.outcome is Outcome.TIMEOUT and wants.calls == 1


@pytest.mark.anyio
async def test_a_waiting_call_gets_unavailable_when_the_ledger_goes_down() -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    s = leased(clock, granted=BOUND // 2)
    lease = s.lease
    assert lease is not None
    results: list[Outcome] = []

    async def call() -> None:
        results.append((await ledger.admit(claim((s,)), timeout=5)).outcome)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await until(lambda: s.waiting == 1)
        lease.available = False  # the fleet manager's round failed
        ledger.refresh([s])
    assert results == [Outcome.UNAVAILABLE] and s.waiting == 0 and s.held_nanos == 0


@pytest.mark.anyio
async def test_exhausted_is_decided_on_the_fleets_settled_spend_not_the_lease() -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    wants = Wants(ledger)
    budget = 10_000
    # Others' spend leaves less than the least the call can cost: refused, no asking.
    s = leased(clock, granted=0, budget=budget, others_spent=budget - LEAST + 1)
    got = await ledger.admit(claim((s,)), timeout=1)
    assert got.outcome is Outcome.EXHAUSTED and got.scope is s and got.least_nanos == LEAST
    assert wants.calls == 0 and s.lease is not None and s.lease.want_nanos == 0
    # Exactly the least left: the call fits the fleet (clamped) and asks the lease for it.
    s = leased(clock, granted=0, budget=budget, others_spent=budget - LEAST)
    short = await ledger.admit(claim((s,)), timeout=0.01)
    assert short.outcome is Outcome.TIMEOUT and wants.calls == 1
    assert s.lease is not None and s.lease.want_nanos == LEAST
    # Others' unspent leases are money that remains: a call waits for it, never refused.
    s = leased(clock, granted=0, budget=budget)
    assert s.lease is not None
    s.lease.others_held_nanos = budget
    held = await ledger.admit(claim((s,)), timeout=0.01)
    assert held.outcome is Outcome.TIMEOUT and s.lease.want_nanos == BOUND


@pytest.mark.anyio
async def test_settle_counts_in_fleet_spend_and_own_spend_and_a_roll_clears_the_lease() -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    resets: list[Scope] = []
    ledger.on_reset = resets.append
    s = leased(clock, granted=5 * BOUND, others_spent=3000)
    lease = s.lease
    assert lease is not None
    s.window, s.resets_at = "1h", T0 + 3600
    got = await ledger.admit(claim((s,)), timeout=1)
    assert got.hold is not None
    clock.now += 5
    ledger.settle(got.hold, 700)
    assert (s.spent_nanos, lease.own_nanos, s.held_nanos) == (3700, 700, 0)
    assert lease.used_at == clock.now and lease.unreported_nanos == 700
    lease.reported_nanos, lease.others_held_nanos = 700, 400
    clock.now = T0 + 3600 * 3 + 1  # two resets missed: whole windows later
    ledger.roll(s, clock())
    assert resets == [s] and s.resets_at == T0 + 3600 * 4 and s.spent_nanos == 0
    assert (lease.own_nanos, lease.granted_nanos, lease.reported_nanos) == (0, 0, 0)
    assert (lease.others_spent_nanos, lease.others_held_nanos, lease.expires_at) == (0, 0, None)
    after = await ledger.admit(claim((s,)), timeout=0.01)  # the new window asks anew
    assert after.outcome is Outcome.TIMEOUT and lease.want_nanos == BOUND


@pytest.mark.anyio
async def test_a_hold_settled_after_the_window_reset_counts_in_the_new_window() -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    s = leased(clock, granted=5 * BOUND, others_spent=3000)
    s.window, s.resets_at = "1h", T0 + 3600
    got = await ledger.admit(claim((s,)), timeout=1)
    assert got.hold is not None and s.lease is not None
    clock.now = T0 + 3601
    ledger.settle(got.hold, 300)
    assert (s.spent_nanos, s.lease.own_nanos, s.held_nanos) == (300, 300, 0)


def test_lease_target_is_at_least_the_need() -> None:
    def target(need: int, remaining: int) -> int:
        return lease_target(
            need=need, bound=100, rate_nanos_s=0.0, horizon_s=10.0, remaining=remaining, daemons=2
        )

    assert target(5000, 1000) == 5000
    assert target(5000, 0) == 5000
    assert target(5000, -10) == 5000  # others overspent (expired leases charged whole)
    assert target(0, -10) == 0


def test_lease_target_grows_with_the_rate_and_at_least_a_few_bounds_ahead() -> None:
    def target(rate: float, bound: int = 100) -> int:
        return lease_target(
            need=50, bound=bound, rate_nanos_s=rate, horizon_s=10.0, remaining=10**12, daemons=3
        )

    assert target(0.0) == 50 + 4 * 100  # idle: a few calls' bounds, not one per call
    assert target(10.0) == 50 + 4 * 100  # 100 over the horizon: the bounds still lead
    assert target(1000.0) == 50 + 10_000
    assert target(1000.0) < target(5000.0) == 50 + 50_000


def test_lease_target_is_capped_by_a_fair_share_of_what_remains_unless_needed() -> None:
    def target(need: int, remaining: int, daemons: int) -> int:
        return lease_target(
            need=need,
            bound=1000,
            rate_nanos_s=1e6,
            horizon_s=10.0,
            remaining=remaining,
            daemons=daemons,
        )

    assert target(100, 10_000, 5) == 10_000 // 10 == 1000
    assert target(100, 10_000, 1) == 5000
    assert target(100, 10_000, 0) == 5000  # a daemon counts itself at least
    assert target(1500, 10_000, 5) == 1500  # the calls need more than the share
    assert target(900, 10_000, 5) == 1000


# ---- property: the lease is never overspent -------------------------------------------

#: (operation, which scope or hold, an amount): admit a call of that output bound through
#: the project (0) or the project and global (1); settle a hold at that percent of its
#: bound; grow a grant; hand back down to own + held + the amount; move expiry (0: into
#: the margin, 1: far ahead).
ops = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.integers(0, 1), st.integers(1, 300)),
        st.tuples(st.just("settle"), st.integers(0, 50), st.integers(0, 100)),
        st.tuples(st.just("grow"), st.integers(0, 1), st.integers(0, 800)),
        st.tuples(st.just("shrink"), st.integers(0, 1), st.integers(0, 400)),
        st.tuples(st.just("expire"), st.integers(0, 1), st.integers(0, 1)),
    ),
    max_size=60,
)


@settings(max_examples=120, deadline=None)
@given(ops=ops, grants=st.tuples(st.integers(0, 1500), st.integers(0, 1500)))
def test_own_spend_plus_holds_never_exceed_the_grant(
    ops: list[tuple[str, int, int]], grants: tuple[int, int]
) -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    project = leased(clock, granted=grants[0], key="project:p")
    glob = leased(clock, granted=grants[1], key="global")
    agent = Scope("agent:a1", budget_nanos=10**9)
    shared = (project, glob)
    holds: list[Hold] = []

    def lease_of(s: Scope) -> Lease:
        assert s.lease is not None
        return s.lease

    def valid(s: Scope) -> bool:
        expires = lease_of(s).expires_at
        return expires is not None and clock() < expires - EXPIRY_MARGIN_S

    def check() -> None:
        for s in shared:
            lease = lease_of(s)
            assert lease.own_nanos + s.held_nanos <= lease.granted_nanos, s.key
            assert s.spent_nanos == lease.others_spent_nanos + lease.own_nanos, s.key

    async def main() -> None:
        for op, which, amount in ops:
            if op == "admit":
                scopes = (agent, *shared[: which + 1])
                usable = all(valid(s) for s in scopes[1:])
                got = await ledger.admit(Claim("a1", scopes, linear(1, 1), 1, amount), timeout=0)
                if got.hold is not None:
                    assert usable, "admitted on an expired lease"
                    holds.append(got.hold)
            elif op == "settle" and holds:
                hold = holds.pop(which % len(holds))
                ledger.settle(hold, hold.nanos * amount // 100)
            elif op == "grow":
                lease_of(shared[which]).granted_nanos += amount
                ledger.refresh([shared[which]])
            elif op == "shrink":
                s = shared[which]
                lease = lease_of(s)
                lease.granted_nanos = min(
                    lease.granted_nanos, lease.own_nanos + s.held_nanos + amount
                )
                ledger.refresh([s])
            elif op == "expire":
                lease_of(shared[which]).expires_at = clock() + (60.0 if amount else 1.0)
                ledger.refresh([shared[which]])
            check()
        for hold in holds:
            ledger.settle(hold, 0)
        check()
        assert all(s.held_nanos == 0 and s.in_flight == 0 for s in (agent, *shared))

    anyio.run(main)
