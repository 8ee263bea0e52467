"""The fleet ledger's transactions: one PostgreSQL transaction per lease sync.

A sync reports a daemon's settled spend in a shared scope (an absolute figure for the
window, applied with GREATEST: a retried or replayed report is never counted twice),
and sets its lease in the same transaction, under the scope row's lock:

    others_spent = Σ other daemons' reported + Σ expired leases' unreported (charged whole)
    others_held  = Σ other daemons' live leases' unreported
    available    = budget - others_spent - others_held - own reported
    slice        = max(held in flight, min(target, available))   → granted = own + slice
                   (only what is held in flight, when available < what the calls need)

so settled spend plus outstanding leases never exceed the budget. When the slice falls
short of what the daemon's calls need, `demand_at` says so; the others hand back what
they do not need at their next poll.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import msgspec

from ironrt.governance.ledger.lease import lease_target


class FleetLimits(msgspec.Struct, frozen=True, kw_only=True):
    """A shared scope's limits as the fleet holds them (one row of ironrt_fleet_scopes)."""

    scope: str
    version: int
    budget_nanos: int | None = None
    window: str | None = None
    resets_at: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    models: tuple[str, ...] | None = None
    pii: str | None = None
    pii_types: dict[str, str] | None = None
    demand_at: float = 0.0
    demand_by: str = ""


class FleetView(msgspec.Struct, frozen=True, kw_only=True):
    """A shared scope as a poll sees it: its limits and the other daemons' books in its
    current window (expired leases charged whole, as in a sync)."""

    limits: FleetLimits
    others_spent_nanos: int
    others_held_nanos: int
    daemons: int


class SyncAsk(msgspec.Struct, frozen=True, kw_only=True):
    """What a daemon brings to a sync of one scope."""

    scope: str
    #: Own settled spend in the window ending `window_end` (0.0: no window).
    own_nanos: int
    window_end: float
    #: Held by its calls in flight (never taken back) and needed by its waiting calls.
    held_nanos: int
    need_nanos: int
    #: The largest bound a waiting call asked for, and the recent spend rate.
    bound_nanos: int = 0
    rate_nanos_s: float = 0.0
    horizon_s: float = 10.0
    #: False: hand back everything beyond `need` (idle, stopping, or others' demand).
    grow: bool = True
    ttl_s: float = 60.0
    #: Why the daemon asks (for its counters): want, renew, report, hand_back, ...
    reason: str = "sync"


class SyncResult(msgspec.Struct, frozen=True, kw_only=True):
    limits: FleetLimits
    #: The window the figures below belong to (0.0: none).
    window_end: float
    reported_nanos: int
    granted_nanos: int
    #: Seconds from the database's now until the lease expires.
    expires_in_s: float
    others_spent_nanos: int
    others_held_nanos: int
    daemons: int
    #: The slice fell short of `need_nanos` (others hold the rest for now).
    short: bool


#: The channel a daemon notifies when its calls wait for lease others hold, or when it
#: changed a scope's limits: the others poll at once.
CHANNEL = "ironrt_fleet"

#: How far ahead of the database's clock a daemon's may be for its window reset to count.
ROLL_SKEW_S = 5.0

_SCOPE_COLUMNS = (
    "scope, version, budget_nanos, window_spec, resets_at, rpm, tpm, max_concurrent, "
    "models, pii, pii_types, demand_at, demand_by"
)


def _limits(row: Any) -> FleetLimits:
    models = row["models"]
    types = row["pii_types"]
    return FleetLimits(
        scope=row["scope"],
        version=int(row["version"]),
        budget_nanos=row["budget_nanos"],
        window=row["window_spec"],
        resets_at=row["resets_at"],
        rpm=row["rpm"],
        tpm=row["tpm"],
        max_concurrent=row["max_concurrent"],
        models=tuple(json.loads(models)) if models is not None else None,
        pii=row["pii"],
        pii_types=json.loads(types) if types is not None else None,
        demand_at=float(row["demand_at"]),
        demand_by=row["demand_by"],
    )


def _window_seconds(spec: str) -> int:
    from ironrt.values import parse_duration

    return parse_duration(spec)


class FleetStore:
    """The queries, on one asyncpg connection the caller owns (and serialises)."""

    def __init__(self, daemon_id: str) -> None:
        self.daemon_id = daemon_id
        self.host = socket.gethostname()

    async def now(self, conn: Any) -> float:
        return float(await conn.fetchval("SELECT extract(epoch from clock_timestamp())"))

    async def views(self, conn: Any) -> list[FleetView]:
        """Every shared scope, with the other daemons' books (one query)."""
        columns = ", ".join(f"s.{c.strip()}" for c in _SCOPE_COLUMNS.split(","))
        rows = await conn.fetch(
            f"SELECT {columns}, count(l.daemon) AS n, "
            "coalesce(sum(l.reported_nanos), 0) AS reported, "
            "coalesce(sum(CASE WHEN l.expires_at > now_ THEN "
            "greatest(l.granted_nanos - l.reported_nanos, 0) ELSE 0 END), 0) AS held, "
            "coalesce(sum(CASE WHEN l.expires_at <= now_ THEN "
            "greatest(l.granted_nanos - l.reported_nanos, 0) ELSE 0 END), 0) AS charged "
            "FROM ironrt_fleet_scopes s "
            "CROSS JOIN (SELECT extract(epoch from clock_timestamp()) AS now_) t "
            "LEFT JOIN ironrt_fleet_leases l ON l.scope = s.scope AND l.daemon <> $1 "
            "AND l.window_end = coalesce(s.resets_at, 0) "
            "GROUP BY s.scope, t.now_",
            self.daemon_id,
        )
        return [
            FleetView(
                limits=_limits(r),
                others_spent_nanos=int(r["reported"]) + int(r["charged"]),
                others_held_nanos=int(r["held"]),
                daemons=int(r["n"]) + 1,
            )
            for r in rows
        ]

    async def _locked(self, conn: Any, scope: str, now: float) -> Any:
        """The scope's row, locked for this transaction (created with no limits)."""
        await conn.execute(
            "INSERT INTO ironrt_fleet_scopes(scope, updated_at) VALUES ($1, $2) "
            "ON CONFLICT (scope) DO NOTHING",
            scope,
            now,
        )
        return await conn.fetchrow(
            f"SELECT {_SCOPE_COLUMNS} FROM ironrt_fleet_scopes WHERE scope = $1 FOR UPDATE",
            scope,
        )

    async def _roll(self, conn: Any, row: Any, now: float, seen_end: float) -> Any:
        """Move a window that is over (by the database's clock, or because a daemon has
        already seen it reset) on by whole windows, so every daemon shares `resets_at`."""
        resets_at, spec = row["resets_at"], row["window_spec"]
        if resets_at is None or spec is None:
            return row
        # A daemon's clock may run a little ahead of the database's: a reset it has
        # seen counts only within ROLL_SKEW_S of the database's own, or a daemon whose
        # clock is far ahead would start everyone's next window early.
        seen = seen_end > resets_at and now >= resets_at - ROLL_SKEW_S
        if now < resets_at and not seen:
            return row
        step = _window_seconds(spec) or 1
        missed = int((max(now, resets_at) - resets_at) // step) + 1
        return await conn.fetchrow(
            f"UPDATE ironrt_fleet_scopes SET resets_at = $2 WHERE scope = $1 "
            f"RETURNING {_SCOPE_COLUMNS}",
            row["scope"],
            resets_at + missed * step,
        )

    async def sync(self, conn: Any, ask: SyncAsk) -> SyncResult:
        """Report own spend and set this daemon's lease on one scope (one transaction)."""
        async with conn.transaction():
            now = await self.now(conn)
            row = await self._locked(conn, ask.scope, now)
            row = await self._roll(conn, row, now, ask.window_end)
            window_end = float(row["resets_at"] or 0.0)
            mine = await conn.fetchrow(
                "SELECT window_end, reported_nanos FROM ironrt_fleet_leases "
                "WHERE scope = $1 AND daemon = $2",
                ask.scope,
                self.daemon_id,
            )
            # Own spend counts for the fleet's current window only: a report of a window
            # the database has moved past is the old window's, which is over.
            own = ask.own_nanos if ask.window_end == window_end else 0
            if mine is not None and float(mine["window_end"]) == window_end:
                own = max(own, int(mine["reported_nanos"]))
            others = await conn.fetchrow(
                "SELECT count(*) AS n, "
                "coalesce(sum(reported_nanos), 0) AS reported, "
                "coalesce(sum(CASE WHEN expires_at > $3 "
                "THEN greatest(granted_nanos - reported_nanos, 0) ELSE 0 END), 0) AS held, "
                "coalesce(sum(CASE WHEN expires_at <= $3 "
                "THEN greatest(granted_nanos - reported_nanos, 0) ELSE 0 END), 0) AS charged "
                "FROM ironrt_fleet_leases "
                "WHERE scope = $1 AND daemon <> $2 AND window_end = $4",
                ask.scope,
                self.daemon_id,
                now,
                window_end,
            )
            others_spent = int(others["reported"]) + int(others["charged"])
            others_held = int(others["held"])
            daemons = int(others["n"]) + 1
            budget = row["budget_nanos"]
            if budget is not None:
                # Daemons alive anywhere in the fleet may join this scope's spending any
                # moment: the fair share counts them too, not only those already in it.
                alive = await conn.fetchval(
                    "SELECT count(DISTINCT daemon) FROM ironrt_fleet_leases "
                    "WHERE daemon <> $1 AND updated_at > $2",
                    self.daemon_id,
                    now - ask.ttl_s,
                )
                sharing = max(daemons, int(alive) + 1)
            short = False
            if budget is None:
                granted = own  # nothing to lease: spend is only reported
            else:
                remaining = budget - others_spent - own
                available = max(remaining - others_held, 0)
                target = (
                    lease_target(
                        need=ask.need_nanos,
                        bound=ask.bound_nanos,
                        rate_nanos_s=ask.rate_nanos_s,
                        horizon_s=ask.horizon_s,
                        remaining=remaining,
                        daemons=sharing,
                    )
                    if ask.grow
                    else ask.need_nanos
                )
                # All or nothing: a daemon that cannot get what its calls need keeps only
                # what its calls in flight hold, so two daemons each holding part of what
                # the other needs cannot wait on each other.
                short = available < ask.need_nanos
                slice_ = ask.held_nanos if short else max(ask.held_nanos, min(target, available))
                granted = own + slice_
            await conn.execute(
                "INSERT INTO ironrt_fleet_leases(scope, daemon, host, window_end, "
                "granted_nanos, reported_nanos, expires_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (scope, daemon) DO UPDATE SET host = excluded.host, "
                "window_end = excluded.window_end, granted_nanos = excluded.granted_nanos, "
                "reported_nanos = excluded.reported_nanos, expires_at = excluded.expires_at, "
                "updated_at = excluded.updated_at",
                ask.scope,
                self.daemon_id,
                self.host,
                window_end,
                granted,
                own,
                now + ask.ttl_s,
                now,
            )
            if short:  # the others hear of it at once (`NOTIFY`), not at their next poll
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, ask.scope)
                row = await conn.fetchrow(
                    "UPDATE ironrt_fleet_scopes SET demand_at = $2, demand_by = $3 "
                    f"WHERE scope = $1 RETURNING {_SCOPE_COLUMNS}",
                    ask.scope,
                    now,
                    self.daemon_id,
                )
        return SyncResult(
            limits=_limits(row),
            window_end=window_end,
            reported_nanos=own,
            granted_nanos=granted,
            expires_in_s=ask.ttl_s,
            others_spent_nanos=others_spent,
            others_held_nanos=others_held,
            daemons=daemons,
            short=short,
        )

    async def put_limits(
        self, conn: Any, scope: str, limits: dict[str, Any], *, only_new: bool = False
    ) -> FleetLimits:
        """Set a scope's limits for the whole fleet (`only_new`: only if the fleet has no
        row for it yet, the first daemon's local limits seed it). A new window starts now
        and keeps the window's spend so far: the leases move to it."""
        async with conn.transaction():
            now = await self.now(conn)
            if only_new:
                # A row a sync made (version 1) has no limits anyone set: seed it.
                exists = await conn.fetchval(
                    "SELECT 1 FROM ironrt_fleet_scopes WHERE scope = $1 AND version > 1", scope
                )
                if exists:
                    row = await conn.fetchrow(
                        f"SELECT {_SCOPE_COLUMNS} FROM ironrt_fleet_scopes WHERE scope = $1",
                        scope,
                    )
                    return _limits(row)
            row = await self._locked(conn, scope, now)
            old_end = float(row["resets_at"] or 0.0)
            spec = limits.get("window")
            new_end = old_end
            if spec != row["window_spec"]:
                new_end = now + _window_seconds(spec) if spec else 0.0
            models = limits.get("models")
            types = limits.get("pii_types")
            row = await conn.fetchrow(
                "UPDATE ironrt_fleet_scopes SET budget_nanos = $2, window_spec = $3, "
                "resets_at = $4, rpm = $5, tpm = $6, max_concurrent = $7, models = $8, "
                "pii = $9, pii_types = $10, version = version + 1, updated_at = $11 "
                f"WHERE scope = $1 RETURNING {_SCOPE_COLUMNS}",
                scope,
                limits.get("budget_nanos"),
                spec,
                new_end or None,
                limits.get("rpm"),
                limits.get("tpm"),
                limits.get("max_concurrent"),
                json.dumps(list(models)) if models is not None else None,
                limits.get("pii"),
                json.dumps(types) if types is not None else None,
                now,
            )
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, scope)
            if new_end != old_end:
                await conn.execute(
                    "UPDATE ironrt_fleet_leases SET window_end = $3 "
                    "WHERE scope = $1 AND window_end = $2",
                    scope,
                    old_end,
                    new_end,
                )
        return _limits(row)

    async def mine(self, conn: Any) -> set[str]:
        """The scopes where this daemon has a row (a lease to reconcile, or hand back)."""
        rows = await conn.fetch(
            "SELECT scope FROM ironrt_fleet_leases WHERE daemon = $1", self.daemon_id
        )
        return {r["scope"] for r in rows}

    async def leases(self, conn: Any, scope: str) -> list[dict[str, Any]]:
        """Every daemon's row of a scope (for `doctor` and tests)."""
        rows = await conn.fetch(
            "SELECT daemon, host, window_end, granted_nanos, reported_nanos, expires_at "
            "FROM ironrt_fleet_leases WHERE scope = $1 ORDER BY daemon",
            scope,
        )
        return [dict(r) for r in rows]
