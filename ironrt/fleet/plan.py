"""When a daemon syncs a shared scope with the fleet ledger, and what it asks for.

Pure decisions over the ledger's books (no I/O): the fleet manager calls `Planner.plan`
for every shared scope each round and runs the sync it returns, if any.

    calls wait for more lease              → want (sized from the spend rate, bounded)
    never synced, and in use               → first
    spare lease while idle, or others wait → hand_back (all but what is in flight)
    busy, lease low or half its TTL gone   → renew
    unreported spend older than poll_s     → report (the slice kept as it is)
    after a restart, or when stopping      → reconcile (report, hand back the rest)

While another daemon's demand is fresh (`CROWDED_S`), this one asks for nothing ahead
and holds no more than a fair share of what remains in flight (`Lease.cap_nanos`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from msgspec.structs import replace

from ironrt.fleet.store import FleetLimits, SyncAsk
from ironrt.governance.ledger import Scope
from ironrt.governance.ledger.lease import Lease

#: How long another daemon's unmet demand makes this one share.
CROWDED_S = 5.0


@dataclass(slots=True)
class _Rate:
    """A scope's recent own spend rate (nano-dollars per second, smoothed)."""

    own: int = 0
    at: float = 0.0
    per_s: float = 0.0

    def update(self, own: int, now: float) -> None:
        if self.at and now > self.at:
            sample = max(own - self.own, 0) / (now - self.at)
            self.per_s = sample if not self.per_s else 0.5 * self.per_s + 0.5 * sample
        self.own, self.at = own, now


class Planner:
    def __init__(
        self,
        daemon_id: str,
        *,
        ttl_s: float,
        poll_s: float,
        idle_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.daemon_id = daemon_id
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.idle_s = idle_s
        self.clock = clock
        #: Per scope: the latest unmet demand (its time in the database, the daemon) and
        #: when this daemon first saw it.
        self._demand: dict[str, tuple[float, str, float]] = {}
        self._rates: dict[str, _Rate] = {}
        #: Scopes where the database holds a row of this daemon's (to reconcile).
        self.mine: set[str] = set()

    def plan(self, scope: Scope, now: float, *, reconcile: bool = False) -> SyncAsk | None:
        """The sync a scope needs now, if any."""
        lease = scope.lease
        assert lease is not None
        rate = self._rates.setdefault(scope.key, _Rate())
        rate.update(lease.own_nanos, now)
        held = scope.held_nanos
        room = max(lease.room(now), 0)
        busy = scope.in_flight > 0 or scope.waiting > 0 or now - lease.used_at < self.idle_s
        window_end = scope.resets_at or 0.0
        base = SyncAsk(
            scope=scope.key,
            own_nanos=lease.own_nanos,
            window_end=window_end,
            held_nanos=held,
            need_nanos=held,
            bound_nanos=lease.want_bound_nanos,
            rate_nanos_s=rate.per_s,
            horizon_s=max(self.ttl_s / 3, 1.0),
            ttl_s=self.ttl_s,
        )
        budgeted = scope.budget_nanos is not None
        if reconcile:  # after a restart: report what was spent, hand back the rest
            if not lease.own_nanos and scope.key not in self.mine:
                return None
            return replace(base, reason="reconcile", need_nanos=held, grow=False)
        # Another daemon could not get what its calls need: lease only what is needed
        # here (nothing ahead) and hand back the rest, until its demand is 5 s old.
        crowded = self._crowded(scope.key, now)
        self._share(scope, lease, crowded)
        if lease.want_nanos:
            backoff = min(self.poll_s / 4 * 2 ** (lease.short_streak - 1), self.poll_s)
            if lease.short_streak and now - lease.synced_at < backoff:
                return None  # others hand back at their next poll: not a tight loop
            return replace(
                base, reason="want", need_nanos=room + lease.want_nanos, grow=not crowded
            )
        if not lease.synced_at and (lease.own_nanos or busy):
            return replace(base, reason="first", need_nanos=max(room, held), grow=False)
        spare = room - held
        if budgeted and spare > 0 and (crowded or not busy):
            return replace(base, reason="hand_back", need_nanos=held, grow=False)
        if budgeted and busy and lease.expires_at is not None:
            ahead = max(rate.per_s * self.poll_s * 2, lease.want_bound_nanos)
            if lease.expires_at - now < self.ttl_s / 2 or spare < ahead:
                return replace(base, reason="renew", need_nanos=held)
        if lease.unreported_nanos > 0 and now - lease.synced_at >= self.poll_s:
            return replace(base, reason="report", need_nanos=max(room, held), grow=False)
        return None

    def note_demand(self, limits: FleetLimits) -> None:
        """Remember when (by this daemon's clock) a new unmet demand was first seen."""
        seen = self._demand.get(limits.scope)
        if seen is None or seen[0] != limits.demand_at:
            self._demand[limits.scope] = (limits.demand_at, limits.demand_by, self.clock())

    def _crowded(self, key: str, now: float) -> bool:
        seen = self._demand.get(key)
        if seen is None or not seen[0] or seen[1] == self.daemon_id:
            return False
        return now - seen[2] < CROWDED_S

    @staticmethod
    def _share(scope: Scope, lease: Lease, crowded: bool) -> None:
        """While other daemons wait for lease, hold in flight no more than a fair share of
        what remains (`Lease.cap_nanos`); lifted once their demand is old."""
        cap = None
        if crowded and scope.budget_nanos is not None:
            cap = max((scope.budget_nanos - scope.spent_nanos) // max(lease.daemons, 1), 0)
        lease.cap_nanos = cap  # the round ends with `Ledger.refresh`: waiters see it
