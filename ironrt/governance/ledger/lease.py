"""This daemon's lease on a shared scope: the slice of a fleet budget it may spend alone.

With `IRONRT_LEDGER_URL` the `project:*` and `global` scopes are shared by every daemon on
that database (`ironrt.fleet`). Each daemon spends from a lease, granted by one
PostgreSQL transaction, so the database is off the hot path: the ledger admits a call of
a shared scope when its bound fits the lease (what this daemon was granted minus what it
has spent and holds), exactly as it admits a local scope's call against its budget.

    fleet budget ─┬─ settled spend, all daemons (others' reports + this daemon's own)
                  ├─ others' unspent leases   (money that remains: they return it on demand)
                  └─ this daemon's lease: granted ─┬─ own spend
                                                   ├─ held by its calls in flight
                                                   └─ room: the next call's bound must fit

A call whose bound does not fit the lease waits while the fleet manager asks for more
(`want_nanos`); it is refused as exhausted only when the fleet's *settled* spend (others'
expired leases charged whole, conservatively) leaves less than the least it can cost. With
the database unreachable, calls go on inside the lease until it is spent or expires, then
get a 503 (`ledger_unavailable`): never unlimited spend.

Plain memory, no I/O: `ironrt.fleet` fills it from the database and reads what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A lease is not spent from in its last seconds: the database counts it expired at
#: `expires_at` by its own clock, and renewal has this long to land first.
EXPIRY_MARGIN_S = 2.0


@dataclass(slots=True, eq=False)
class Lease:
    #: This daemon's settled spend in the scope's current window (durable: it is the
    #: local books' own column, the figure it reconciles with after a crash).
    own_nanos: int = 0
    #: Own spend plus the unspent slice granted, in the current window.
    granted_nanos: int = 0
    #: When the database stops counting the slice as this daemon's (epoch seconds).
    expires_at: float | None = None
    #: Other daemons' settled spend in this window, expired leases charged whole.
    others_spent_nanos: int = 0
    #: Other daemons' unspent live leases (money that remains, handed back on demand).
    others_held_nanos: int = 0
    #: Daemons with a lease or a report in this window, this one included.
    daemons: int = 1
    #: The database answered the last sync (False: calls go on inside the lease only).
    available: bool = True
    #: The latest reason it did not, for `ironrt doctor` and `limits`.
    error: str | None = None
    #: More lease the calls waiting on it need (nano-dollars), for the fleet manager.
    want_nanos: int = 0
    #: The largest bound a waiting call asked for, to size the next grant.
    want_bound_nanos: int = 0
    #: Own spend already acknowledged by the database.
    reported_nanos: int = 0
    #: Epoch of the last successful sync, and of this daemon's last call in the scope.
    synced_at: float = 0.0
    used_at: float = 0.0
    #: Syncs in a row that could not give what the waiting calls needed (others hold
    #: it): the next ask backs off, for them to hand it back.
    short_streak: int = 0
    #: While other daemons wait for lease, the most this one may have in flight (a fair
    #: share of what remains): near the end of a budget no daemon monopolises it.
    cap_nanos: int | None = None
    #: Seconds before `expires_at` it stops being spent from (`EXPIRY_MARGIN_S`, less
    #: for short TTLs).
    margin_s: float = EXPIRY_MARGIN_S

    def room(self, now: float) -> int:
        """What this daemon may still admit from (before its holds): nothing once the
        lease is (about to be) expired."""
        if self.expires_at is None or now >= self.expires_at - self.margin_s:
            return 0
        return self.granted_nanos - self.own_nanos

    @property
    def unreported_nanos(self) -> int:
        return self.own_nanos - self.reported_nanos

    def ask(self, nanos: int, bound: int) -> bool:
        """Note that a waiting call needs `nanos` more; True when this is news (the fleet
        manager should be woken)."""
        news = nanos > self.want_nanos
        self.want_nanos = max(self.want_nanos, nanos)
        self.want_bound_nanos = max(self.want_bound_nanos, bound)
        return news

    def new_window(self) -> None:
        """The window reset: nothing spent, nothing granted (the next call asks anew)."""
        self.own_nanos = self.granted_nanos = self.reported_nanos = 0
        self.others_spent_nanos = self.others_held_nanos = 0
        self.expires_at = None


def lease_target(
    *,
    need: int,
    bound: int,
    rate_nanos_s: float,
    horizon_s: float,
    remaining: int,
    daemons: int,
) -> int:
    """The slice (beyond own spend) to ask for, at least `need` (what calls in flight hold
    plus what the waiting ones need).

    Sized from the recent spend rate over `horizon_s` (at least a few calls' bounds, so a
    burst does not cost a transaction per call), and never above a fair share of what
    remains, `remaining / (2 * daemons)`, unless the calls need it: near the end of a
    budget the slices shrink, so one daemon cannot strand the remainder.
    """
    ahead = max(int(rate_nanos_s * horizon_s), 4 * bound)
    share = remaining // (2 * max(daemons, 1)) if remaining > 0 else 0
    return max(need, min(need + ahead, share))
