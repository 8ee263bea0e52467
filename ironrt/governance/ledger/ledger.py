"""Exact admission: never overspend, never refuse while money remains.

A call is admitted when its bound fits every scope it belongs to, counting what calls in
flight hold. When it does not fit *only because of those holds* it waits, in FIFO order
per scope, until they settle (most settle far below their bound); it is refused as
exhausted only when the settled spend plus the least the call can cost (its input and the
minimum output clamping allows) exceeds a budget. Calls over a scope's `max_concurrent`
wait in the same queue.

    verdict of a call, re-evaluated whenever the books change (settle, limits, window):
      least > budget - spent               → exhausted (or: ask for an exact input count)
      bound > budget - spent               → clamp the output to what budget - spent affords
      in flight ≥ max_concurrent, or
      bound > budget - spent - held        → wait
      otherwise                            → admitted: the bound is held in every scope

Everything here runs on the event loop without awaiting between a decision and the books
it changes, so concurrent calls cannot both take the same money.

Announcements (`BudgetWarning` at 50/80/95 %, `BudgetExhausted` at 100 %, on a refusal or
when a call parks) are queued in `announcements` at the moment the books decide them, for
the daemon to publish in that order. If each call published its own as it finished, a
call refused (or parked) just after another crossed 80 and 95 % could store "exhausted"
before those warnings, while their call was still committing its trace. One settle can
cross several thresholds in several scopes at once: those are queued by threshold (50 % of
every scope before 80 % of any; agent, project, global within one threshold). Once a
publisher is attached (`on_announce`), pausing and resuming an agent wait their turn in
the same queue, so `AgentPaused` never precedes the `BudgetExhausted` that caused it.
"""

from __future__ import annotations

import bisect
import enum
import functools
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ironrt.governance.ledger.money import nanos_to_usd
from ironrt.governance.ledger.scope import Claim, Hold, Scope
from ironrt.protocol.events import BudgetExhausted, BudgetWarning


class Outcome(enum.Enum):
    ADMITTED = "admitted"
    EXHAUSTED = "exhausted"
    #: The byte-based input bound decides the verdict: ask the provider for the exact
    #: count, then admit again (the call keeps its place in the queue).
    NEED_COUNT = "need_count"
    TIMEOUT = "timeout"
    #: The agent stopped while its call waited.
    CANCELLED = "cancelled"
    #: A shared scope's lease is spent or expired and the fleet ledger (PostgreSQL) does
    #: not answer: no more lease, so no call (a 503, never unlimited spend).
    UNAVAILABLE = "unavailable"


class _Verdict(enum.Enum):
    ADMIT = 0
    WAIT = 1
    EXHAUSTED = 2
    NEED_COUNT = 3
    UNAVAILABLE = 4


@dataclass(slots=True)
class Admission:
    outcome: Outcome
    hold: Hold | None = None
    #: The scope that refused or held the call back.
    scope: Scope | None = None
    #: The call's full bound and the least it can cost, nano-dollars.
    bound_nanos: int = 0
    least_nanos: int = 0
    waited_s: float = 0.0


@dataclass(slots=True)
class LedgerEvent:
    #: Its `agent_id` is the agent whose call crossed the threshold, was refused or parked.
    event: BudgetWarning | BudgetExhausted

    @property
    def kind(self) -> str:
        return self.event.kind


#: What the ledger queues for its publisher: an event to publish, or a pause or resume to
#: deliver (a call) once everything before it is published.
Announcement = LedgerEvent | Callable[[], None]


@dataclass(slots=True, eq=False)
class _Waiter:
    claim: Claim
    woken: anyio.Event = field(default_factory=anyio.Event)
    result: Admission | None = None
    parked: bool = False

    def __lt__(self, other: _Waiter) -> bool:
        return self.claim.seq < other.claim.seq


class Ledger:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.scopes: dict[str, Scope] = {}
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._parked: dict[str, int] = {}
        #: Called (synchronously) when an agent's first call parks and when its last
        #: parked call leaves: the daemon SIGSTOPs / SIGCONTs the agent.
        self.on_pause: Callable[[str, Scope], None] = lambda agent_id, scope: None
        self.on_resume: Callable[[str], None] = lambda agent_id: None
        #: Called when a window resets (the daemon persists the scope, publishes an event).
        self.on_reset: Callable[[Scope], None] = lambda scope: None
        #: Budget announcements, and (with a publisher) pause/resume notifications to
        #: deliver, in the order the books decided them; the publisher pops from the left.
        #: A settled or refused call's announcements are published when that call
        #: settles; `on_announce` asks the publisher to come at once for what no settling
        #: call will publish (a parked call's, a pause or resume).
        self.announcements: deque[Announcement] = deque()
        #: None: no publisher (the ledger alone, in tests): `on_pause` and `on_resume` are
        #: called at once, and nothing pops `announcements` but the caller.
        self.on_announce: Callable[[], None] | None = None
        #: Called when a call waits for more lease on a shared scope (the fleet manager
        #: asks the database); None without a fleet ledger.
        self.on_want: Callable[[], None] | None = None
        #: Called with each scope made (the fleet manager gives a shared one its lease).
        self.on_new_scope: Callable[[Scope], None] | None = None
        self._changed = anyio.Event()

    # ---- scopes ---------------------------------------------------------------------
    def scope(self, key: str) -> Scope:
        found = self.scopes.get(key)
        if found is None:
            found = self.scopes[key] = Scope(key)
            if self.on_new_scope is not None:
                self.on_new_scope(found)
        return found

    def drop(self, key: str) -> None:
        self.scopes.pop(key, None)

    def set_limits(self, scope: Scope, changes: dict[str, Any]) -> None:
        scope.apply(changes, self.clock())
        self._changed.set()
        self._pump()

    def roll(self, scope: Scope, now: float) -> None:
        if scope.roll(now):
            self.on_reset(scope)

    def refresh(self, scopes: list[Scope] | None = None) -> None:
        """The books of some scopes changed outside a call (a fleet sync): queue the
        warnings they now cross, and re-evaluate waiting calls."""
        crossed = [(threshold, s) for s in scopes or () for threshold in s.crossed()]
        if self._announce_crossed(crossed, None) and self.on_announce is not None:
            # Only for what this refresh queued: a settling call's own announcements are
            # still published when that call settles (after its trace is on disk).
            self.on_announce()
        self._changed.set()
        self._pump()

    # ---- admission ------------------------------------------------------------------
    async def admit(self, claim: Claim, timeout: float) -> Admission:
        """Admit, refuse or (after at most `timeout` s of waiting) time the call out."""
        if claim.seq < 0:
            claim.seq = next(self._seq)
        if not any(s.waiting for s in claim.scopes):
            verdict, scope, bound, least, cap = self._evaluate(claim)
            if verdict is _Verdict.ADMIT:
                return self._grant(claim, bound, cap)
            if verdict is _Verdict.NEED_COUNT:
                return Admission(Outcome.NEED_COUNT, scope=scope, bound_nanos=bound)
            if verdict is _Verdict.UNAVAILABLE:
                return Admission(Outcome.UNAVAILABLE, scope=scope, bound_nanos=bound)
            if verdict is _Verdict.EXHAUSTED and not claim.park:
                return Admission(
                    Outcome.EXHAUSTED, scope=scope, bound_nanos=bound, least_nanos=least
                )
        waiter = _Waiter(claim)
        bisect.insort(self._waiters, waiter)
        for s in claim.scopes:
            s.waiting += 1
        began = anyio.current_time()
        deadline = began + timeout
        try:
            self._pump()
            while waiter.result is None:
                if waiter.parked:
                    await waiter.woken.wait()
                else:
                    with anyio.move_on_after(deadline - anyio.current_time()):
                        await waiter.woken.wait()
                    if (
                        waiter.result is None
                        and not waiter.parked
                        and (anyio.current_time() >= deadline)
                    ):
                        self._leave(waiter)
                        waiter.result = Admission(Outcome.TIMEOUT, bound_nanos=0)
                waiter.woken = anyio.Event()
        except BaseException:  # cancelled (client gone, daemon stopping)
            if waiter.result is None:
                self._leave(waiter)
                self._pump()
            elif waiter.result.hold is not None:
                self.settle(waiter.result.hold, 0)  # admitted as it was cancelled
            raise
        waiter.result.waited_s = anyio.current_time() - began
        return waiter.result

    def cancel(self, agent_id: str) -> None:
        """The agent stopped: its queued and parked calls are answered at once."""
        for waiter in [w for w in self._waiters if w.claim.agent_id == agent_id]:
            self._leave(waiter)
            waiter.result = Admission(Outcome.CANCELLED)
            waiter.woken.set()
        self._pump()

    def settle(self, hold: Hold, cost_nanos: int) -> list[LedgerEvent]:
        """Turn a hold into spend in each of its scopes (once). The thresholds it crosses
        are queued in `announcements` (before any call this settle lets through or
        refuses can queue its own) and returned, for the caller to act on."""
        if hold.settled:
            return []
        hold.settled = True
        crossed: list[tuple[int, Scope]] = []
        now = self.clock()
        for s in hold.scopes:
            s.held_nanos -= hold.nanos
            s.in_flight -= 1
            if s.resets_at is not None and now >= s.resets_at:  # `roll`'s test, inline
                self.roll(s, now)
            s.spent_nanos += cost_nanos
            if s.lease is not None:
                s.lease.own_nanos += cost_nanos
                s.lease.used_at = now
            reached = s.crossed()
            if reached:
                crossed += [(threshold, s) for threshold in reached]
        events = self._announce_crossed(crossed, hold.agent_id)
        self._pump()
        return events

    def _announce_crossed(
        self, crossed: list[tuple[int, Scope]], agent_id: str | None
    ) -> list[LedgerEvent]:
        """Queue the warnings (and exhaustion) of thresholds just crossed: by threshold,
        scope order kept within one."""
        events: list[LedgerEvent] = []
        for threshold, s in sorted(crossed, key=lambda c: c[0]):  # stable: scope order kept
            kind = BudgetExhausted if threshold == 100 else BudgetWarning
            if threshold == 100:
                s.exhausted = True
            data = {**s.describe(), "threshold_percent": threshold}
            events.append(LedgerEvent(kind(agent_id=agent_id, **data)))
        self.announcements.extend(events)
        return events

    def announce_exhausted(
        self, scope: Scope, agent_id: str, data: dict[str, Any], *, now: bool = False
    ) -> bool:
        """Queue `BudgetExhausted` for `scope` unless this window already has one (it is
        announced once, not for every refused call). `now`: no settling call will publish
        it, the publisher should at once. Returns whether it was queued."""
        if scope.exhausted:
            return False
        scope.exhausted = True
        self.announcements.append(LedgerEvent(BudgetExhausted(agent_id=agent_id, **data)))
        if now and self.on_announce is not None:
            self.on_announce()
        return True

    def _in_turn(self, notify: Callable[[], None]) -> None:
        """Deliver a pause or resume after the announcements queued before it."""
        if self.on_announce is None:
            notify()
        else:
            self.announcements.append(notify)
            self.on_announce()

    def next_reset(self) -> float | None:
        return min((s.resets_at for s in self.scopes.values() if s.resets_at), default=None)

    async def run(self) -> None:
        """Reset windows on time (so held calls and paused agents resume at `resets_at`)."""
        while True:
            self._changed = anyio.Event()
            now = self.clock()
            for s in list(self.scopes.values()):
                self.roll(s, now)
            self._pump()
            upcoming = self.next_reset()
            delay = 3600.0 if upcoming is None else min(max(upcoming - now, 0.001), 3600.0)
            with anyio.move_on_after(delay):
                await self._changed.wait()

    # ---- internals ------------------------------------------------------------------
    def _evaluate(self, claim: Claim) -> tuple[_Verdict, Scope | None, int, int, int | None]:
        """(verdict, deciding scope, bound to hold, least cost, clamped output)."""
        now = self.clock()
        bound = claim.cost(claim.output_tokens)
        least = claim.cost(claim.min_output) if claim.min_output < claim.output_tokens else bound
        room: int | None = None
        tightest: Scope | None = None
        for s in claim.scopes:
            if s.resets_at is not None and now >= s.resets_at:  # `roll`'s test, inline
                self.roll(s, now)
            if s.budget_nanos is None:
                continue
            left = s.budget_nanos - s.spent_nanos
            if least > left:
                if claim.countable and not claim.exact and left > 0:
                    return _Verdict.NEED_COUNT, s, bound, least, None
                return _Verdict.EXHAUSTED, s, bound, least, None
            if room is None or left < room:
                room, tightest = left, s
        cap: int | None = None
        if room is not None and bound > room:
            if claim.countable and not claim.exact:
                return _Verdict.NEED_COUNT, tightest, bound, least, None
            cap = claim.affordable(room)
            bound = claim.cost(cap)
        for s in claim.scopes:
            if s.max_concurrent is not None and s.in_flight >= s.max_concurrent:
                return _Verdict.WAIT, s, bound, least, cap
            if s.budget_nanos is None:
                continue
            if bound > s.budget_nanos - s.spent_nanos - s.held_nanos:
                return _Verdict.WAIT, s, bound, least, cap
            lease = s.lease
            if lease is not None:
                if bound > lease.room(now) - s.held_nanos:
                    return self._short_lease(s, now, bound), s, bound, least, cap
                capped = lease.cap_nanos is not None and s.held_nanos + bound > lease.cap_nanos > 0
                if capped and s.held_nanos:  # its fair share is in flight: wait for it
                    return _Verdict.WAIT, s, bound, least, cap
        return _Verdict.ADMIT, None, bound, least, cap

    def _short_lease(self, s: Scope, now: float, bound: int) -> _Verdict:
        """The call fits the fleet's money but not this daemon's lease: wait while the
        fleet manager asks for more, or, with the database unreachable, wait only for
        this daemon's own holds (503 when even they could not make room)."""
        lease = s.lease
        assert lease is not None
        room = lease.room(now)
        if not lease.available:
            return _Verdict.WAIT if bound <= room else _Verdict.UNAVAILABLE
        if lease.ask(bound + s.held_nanos - room, bound) and self.on_want is not None:
            self.on_want()
        return _Verdict.WAIT

    def _grant(self, claim: Claim, bound: int, cap: int | None) -> Admission:
        for s in claim.scopes:
            s.held_nanos += bound
            s.in_flight += 1
        hold = Hold(claim.scopes, bound, cap, agent_id=claim.agent_id)
        return Admission(Outcome.ADMITTED, hold=hold, bound_nanos=bound)

    def _leave(self, waiter: _Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return
        if waiter.parked:
            self._unpark(waiter)
        else:
            for s in waiter.claim.scopes:
                s.waiting -= 1

    def _unpark(self, waiter: _Waiter) -> None:
        agent_id = waiter.claim.agent_id
        left = self._parked.get(agent_id, 1) - 1
        if left <= 0:
            self._parked.pop(agent_id, None)
            self._in_turn(functools.partial(self.on_resume, agent_id))
        else:
            self._parked[agent_id] = left

    def _pump(self) -> None:
        """Re-evaluate queued calls in arrival order; a call still waiting blocks the later
        calls of its scopes (FIFO), parked calls block nobody."""
        blocked: set[int] = set()
        for waiter in list(self._waiters):
            scopes = waiter.claim.scopes
            if not waiter.parked and any(id(s) in blocked for s in scopes):
                blocked.update(id(s) for s in scopes)
                continue
            verdict, scope, bound, least, cap = self._evaluate(waiter.claim)
            if verdict is _Verdict.WAIT:
                if not waiter.parked:
                    blocked.update(id(s) for s in scopes)
                continue
            if verdict is _Verdict.EXHAUSTED and waiter.claim.park:
                if not waiter.parked:
                    waiter.parked = True
                    for s in scopes:
                        s.waiting -= 1
                    agent_id = waiter.claim.agent_id
                    self._parked[agent_id] = self._parked.get(agent_id, 0) + 1
                    if scope is not None:  # announced here, after what settled before it
                        data = {"paused": True, "threshold_percent": 100, **scope.describe()}
                        self.announce_exhausted(scope, agent_id, data, now=True)
                    if self._parked[agent_id] == 1 and scope is not None:
                        self._in_turn(functools.partial(self.on_pause, agent_id, scope))
                    waiter.woken.set()
                continue
            self._leave(waiter)
            if verdict is _Verdict.ADMIT:
                waiter.result = self._grant(waiter.claim, bound, cap)
            elif verdict is _Verdict.NEED_COUNT:
                waiter.result = Admission(Outcome.NEED_COUNT, scope=scope, bound_nanos=bound)
            elif verdict is _Verdict.UNAVAILABLE:
                waiter.result = Admission(Outcome.UNAVAILABLE, scope=scope, bound_nanos=bound)
            else:
                waiter.result = Admission(
                    Outcome.EXHAUSTED, scope=scope, bound_nanos=bound, least_nanos=least
                )
            waiter.woken.set()


def describe_refusal(admission: Admission) -> dict[str, Any]:
    """Event and error fields for a refused call: the scope's books and this call's bound."""
    scope = admission.scope
    data = scope.describe() if scope is not None else {}
    data["call_bound_usd"] = round(nanos_to_usd(admission.bound_nanos), 9)
    data["call_least_usd"] = round(nanos_to_usd(admission.least_nanos), 9)
    return data
