"""The fleet ledger's transactions against a real PostgreSQL: migrations, lease syncs.

Daemons here are `FleetStore`s, each on its own asyncpg connection, as each daemon's
fleet manager holds one: what is pinned is the database's side of the contract, whatever
the manager decides. Above all: settled spend plus outstanding leases never exceed a
budget, also when eight daemons sync at once.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
import pytest

from ironrt.errors import SchemaTooNew
from ironrt.fleet.schema import LATEST, migrate
from ironrt.fleet.store import FleetStore, FleetView, SyncAsk, SyncResult
from tests.fleet.pg import Postgres

pytestmark = pytest.mark.anyio

SCOPE = "project:p"


Connect = Callable[[], Awaitable[Any]]


@pytest.fixture
async def fresh(ledger_url: str) -> AsyncIterator[Any]:
    """A fresh database's connection, nothing migrated (as a daemon first finds it)."""
    c = await asyncpg.connect(ledger_url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture(scope="module")
def fleet_db(postgres: Postgres) -> str:
    """One database for the sync tests: each gets its own schema in it (a fresh database
    per test costs ~0.5 s under load, a schema a few milliseconds)."""
    return postgres.new_database()


@pytest.fixture
async def connect(fleet_db: str) -> AsyncIterator[Connect]:
    """Opens connections to a fresh, migrated schema (one per daemon), all closed after."""
    schema = "t_" + secrets.token_hex(4)
    admin = await asyncpg.connect(fleet_db)
    await admin.execute(f"CREATE SCHEMA {schema}")
    opened: list[Any] = []

    async def open_() -> Any:
        c = await asyncpg.connect(fleet_db, server_settings={"search_path": schema})
        opened.append(c)
        return c

    try:
        await migrate(await open_())
        yield open_
    finally:
        for c in opened:
            await c.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


def ask(
    scope: str = SCOPE,
    *,
    own: int = 0,
    held: int = 0,
    need: int = 0,
    window_end: float = 0.0,
    **kw: Any,
) -> SyncAsk:
    return SyncAsk(
        scope=scope, own_nanos=own, window_end=window_end, held_nanos=held, need_nanos=need, **kw
    )


def view_of(views: list[FleetView], scope: str = SCOPE) -> FleetView:
    [found] = [v for v in views if v.limits.scope == scope]
    return found


async def outstanding(conn: Any, scope: str = SCOPE) -> int:
    """Settled spend plus outstanding leases in the scope's current window, as the table
    holds them (an expired lease counts whole, as the syncs charge it)."""
    total = await conn.fetchval(
        "SELECT coalesce(sum(greatest(l.granted_nanos, l.reported_nanos)), 0) "
        "FROM ironrt_fleet_leases l JOIN ironrt_fleet_scopes s ON s.scope = l.scope "
        "WHERE l.scope = $1 AND l.window_end = coalesce(s.resets_at, 0)",
        scope,
    )
    return int(total)


async def db_passes(conn: Any, moment: float, timeout: float = 5.0) -> None:
    """Wait (polling, bounded) until the database's clock is past `moment`."""
    store = FleetStore("clock")
    with anyio.fail_after(timeout):
        while await store.now(conn) <= moment:
            await anyio.sleep(0.02)


# ---- migrations -----------------------------------------------------------------------


async def test_migrating_twice_is_a_no_op(fresh: Any) -> None:
    assert await migrate(fresh) == LATEST
    await FleetStore("d0").put_limits(fresh, SCOPE, {"budget_nanos": 5000})
    assert await migrate(fresh) == LATEST
    meta = await fresh.fetch("SELECT key, value FROM ironrt_fleet_meta")
    assert [tuple(r) for r in meta] == [("schema_version", str(LATEST))]
    budget = await fresh.fetchval(
        "SELECT budget_nanos FROM ironrt_fleet_scopes WHERE scope = $1", SCOPE
    )
    assert budget == 5000  # nothing re-created


async def test_a_database_made_by_a_newer_ironrt_is_refused(fresh: Any) -> None:
    await migrate(fresh)
    await fresh.execute(
        "UPDATE ironrt_fleet_meta SET value = $1 WHERE key = 'schema_version'", str(LATEST + 1)
    )
    with pytest.raises(SchemaTooNew) as caught:
        await migrate(fresh)
    message = str(caught.value)
    assert f"version {LATEST + 1}" in message and f"({LATEST})" in message
    assert "upgrade ironrt" in message
    # refused in its transaction: nothing changed, the connection still serves
    assert await fresh.fetchval(
        "SELECT value FROM ironrt_fleet_meta WHERE key = 'schema_version'"
    ) == str(LATEST + 1)


async def test_daemons_starting_at_once_migrate_once(ledger_url: str) -> None:
    conns = [await asyncpg.connect(ledger_url) for _ in range(6)]
    versions: list[int] = []

    async def one(c: Any) -> None:
        versions.append(await migrate(c))

    try:
        async with anyio.create_task_group() as tg:
            for c in conns:
                tg.start_soon(one, c)
        assert versions == [LATEST] * 6
        meta = await conns[0].fetch("SELECT key, value FROM ironrt_fleet_meta")
        assert [tuple(r) for r in meta] == [("schema_version", str(LATEST))]
        tables = await conns[0].fetch(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'ironrt_fleet_%' "
            "ORDER BY tablename"
        )
        assert [r[0] for r in tables] == [
            "ironrt_fleet_leases",
            "ironrt_fleet_meta",
            "ironrt_fleet_scopes",
        ]
    finally:
        for c in conns:
            await c.close()


# ---- the invariant ----------------------------------------------------------------------

BUDGET = 1_000_000


@dataclass
class Books:
    """One daemon's view of its lease on one scope, as its ledger would keep it."""

    own: int = 0
    granted: int = 0
    held: int = 0


async def test_eight_daemons_syncing_at_once_never_lease_more_than_the_budget(
    connect: Connect,
) -> None:
    conn = await connect()
    scopes = (SCOPE, "global")
    for scope in scopes:
        await FleetStore("admin").put_limits(conn, scope, {"budget_nanos": BUDGET})
    syncs: list[SyncResult] = []

    async def daemon(n: int) -> None:
        rng = random.Random(n)
        store = FleetStore(f"d{n}")
        books = {scope: Books() for scope in scopes}
        c = await connect()
        for _ in range(25):
            scope = rng.choice(scopes)
            b = books[scope]
            # Between syncs calls settle and new ones start, all inside the last grant.
            own = rng.randint(b.own, max(b.granted, b.own))
            held = rng.randint(0, b.granted - own)
            need = held + rng.choice([0, 0, rng.randint(1, BUDGET // 4)])
            a = ask(
                scope,
                own=own,
                held=held,
                need=need,
                bound_nanos=rng.randint(0, BUDGET // 50),
                rate_nanos_s=rng.uniform(0, BUDGET / 100),
                grow=rng.random() > 0.3,
            )
            result = await store.sync(c, a)
            syncs.append(result)
            assert result.reported_nanos == own
            assert result.granted_nanos >= own + held  # in-flight calls keep their holds
            if result.short:
                assert result.granted_nanos == own + held
            else:
                assert result.granted_nanos >= own + need
            assert await outstanding(c, scope) <= BUDGET
            b.own, b.granted, b.held = own, result.granted_nanos, held
        for scope, b in books.items():  # stopping: report, hand back all
            result = await store.sync(c, ask(scope, own=b.granted, grow=False))
            assert result.granted_nanos == result.reported_nanos == b.granted

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(daemon, n)
    assert len(syncs) == 8 * 25
    assert any(r.short for r in syncs), "the budget was never contended: a weak test"
    for scope in scopes:
        rows = await FleetStore("admin").leases(conn, scope)
        assert len(rows) == 8
        assert sum(r["reported_nanos"] for r in rows) == await outstanding(conn, scope)
        assert await outstanding(conn, scope) <= BUDGET


# ---- reports ----------------------------------------------------------------------------


async def test_a_replayed_or_repeated_report_is_counted_once(connect: Connect) -> None:
    a, b = FleetStore("a"), FleetStore("b")
    c_a, c_b = await connect(), await connect()
    await a.put_limits(c_a, SCOPE, {"budget_nanos": BUDGET})
    first = await a.sync(c_a, ask(need=5000))
    assert first.granted_nanos >= 5000
    await a.sync(c_a, ask(own=800, need=1000, grow=False))
    before = view_of(await b.views(c_b))
    assert before.others_spent_nanos == 800 and before.others_held_nanos == 1000
    replay = await a.sync(c_a, ask(own=300, need=1000, grow=False))  # an older report
    assert replay.reported_nanos == 800 and replay.granted_nanos == 1800
    [row] = await a.leases(c_a, SCOPE)
    assert row["reported_nanos"] == 800
    again = await a.sync(c_a, ask(own=800, need=1000, grow=False))
    assert again.reported_nanos == 800
    after = view_of(await b.views(c_b))
    assert (after.others_spent_nanos, after.others_held_nanos, after.daemons) == (
        before.others_spent_nanos,
        before.others_held_nanos,
        2,
    )
    seen_by_b = await b.sync(c_b, ask())
    assert seen_by_b.others_spent_nanos == 800 and seen_by_b.others_held_nanos == 1000


async def test_an_expired_lease_is_charged_whole_until_its_daemon_reports(
    connect: Connect,
) -> None:
    a, b = FleetStore("a"), FleetStore("b")
    c_a, c_b = await connect(), await connect()
    await a.put_limits(c_a, SCOPE, {"budget_nanos": BUDGET})
    got = await a.sync(c_a, ask(need=10_000, ttl_s=0.5))
    assert got.granted_nanos == 10_000  # need, nothing ahead (no rate, no bound)
    live = view_of(await b.views(c_b))
    assert (live.others_spent_nanos, live.others_held_nanos) == (0, 10_000)
    [row] = await a.leases(c_a, SCOPE)
    await db_passes(c_b, row["expires_at"])
    dead = view_of(await b.views(c_b))
    assert (dead.others_spent_nanos, dead.others_held_nanos) == (10_000, 0)
    synced = await b.sync(c_b, ask(need=1000))
    assert (synced.others_spent_nanos, synced.others_held_nanos) == (10_000, 0)
    back = await a.sync(c_a, ask(own=3000, need=0, grow=False))  # its true spend
    assert back.granted_nanos == back.reported_nanos == 3000
    healed = view_of(await b.views(c_b))
    assert (healed.others_spent_nanos, healed.others_held_nanos) == (3000, 0)


async def test_a_daemon_that_cannot_get_what_it_needs_keeps_only_its_holds(
    connect: Connect,
) -> None:
    a, b = FleetStore("a"), FleetStore("b")
    c_a, c_b = await connect(), await connect()
    await a.put_limits(c_a, SCOPE, {"budget_nanos": 10_000})
    early = await b.sync(c_b, ask(need=2000))
    assert early.granted_nanos == 2000 and not early.short
    assert early.limits.demand_at == 0.0 and early.limits.demand_by == ""
    big = await a.sync(c_a, ask(need=6000))
    assert big.granted_nanos == 6000 and not big.short
    # b holds 1500 in flight and a call waits for 3000 more: only 4000 is free.
    t0 = await a.now(c_a)
    short = await b.sync(c_b, ask(held=1500, need=4500))
    assert short.short and short.granted_nanos == 1500  # not 4000: all or nothing
    assert short.limits.demand_by == "b" and short.limits.demand_at >= t0
    assert await outstanding(c_a) == 7500
    seen = view_of(await a.views(c_a)).limits
    assert (seen.demand_at, seen.demand_by) == (short.limits.demand_at, "b")
    # a hands back what it does not need: b's next ask is met in full
    await a.sync(c_a, ask(need=1000, grow=False))
    met = await b.sync(c_b, ask(held=1500, need=4500, grow=False))
    assert not met.short and met.granted_nanos == 4500


# ---- windows and limits -----------------------------------------------------------------


async def test_a_window_reset_starts_the_fleets_books_anew(connect: Connect) -> None:
    a, b = FleetStore("a"), FleetStore("b")
    c_a, c_b = await connect(), await connect()
    limits = await a.put_limits(c_a, SCOPE, {"budget_nanos": 10_000, "window": "1s"})
    end = limits.resets_at
    assert end is not None and limits.window == "1s"
    granted = await a.sync(c_a, ask(need=4000, window_end=end))
    assert granted.window_end == end and granted.granted_nanos == 4000
    spent = await a.sync(c_a, ask(own=3000, window_end=end, grow=False))
    assert spent.window_end == end and spent.reported_nanos == 3000
    assert view_of(await b.views(c_b)).others_spent_nanos == 3000
    await db_passes(c_b, end)
    fresh = await b.sync(c_b, ask(need=1000, window_end=end))
    moved = fresh.window_end - end
    assert moved >= 1 and moved == pytest.approx(round(moved), abs=1e-6)  # whole windows
    assert fresh.limits.resets_at == fresh.window_end
    assert (fresh.others_spent_nanos, fresh.others_held_nanos, fresh.daemons) == (0, 0, 1)
    # a's report was made for the old window: it does not count in the new one
    late = await a.sync(c_a, ask(own=3000, window_end=end, grow=False))
    assert late.window_end == fresh.window_end and late.reported_nanos == 0
    rows = {r["daemon"]: r for r in await a.leases(c_a, SCOPE)}
    assert rows["a"]["window_end"] == fresh.window_end and rows["a"]["reported_nanos"] == 0
    assert view_of(await b.views(c_b)).others_spent_nanos == 0


async def test_a_new_window_keeps_the_spend_so_far(connect: Connect) -> None:
    a, b = FleetStore("a"), FleetStore("b")
    c_a, c_b = await connect(), await connect()
    await a.put_limits(c_a, SCOPE, {"budget_nanos": 10_000})
    await a.sync(c_a, ask(need=4000))
    await a.sync(c_a, ask(own=3000, grow=False))
    limits = await a.put_limits(c_a, SCOPE, {"budget_nanos": 10_000, "window": "1h"})
    assert limits.resets_at is not None
    [row] = await a.leases(c_a, SCOPE)
    assert row["window_end"] == limits.resets_at  # the leases moved to the new window
    assert view_of(await b.views(c_b)).others_spent_nanos == 3000


async def test_put_limits_only_new_never_overwrites_the_fleets_limits(connect: Connect) -> None:
    conn = await connect()
    store = FleetStore("a")
    first = await store.put_limits(conn, SCOPE, {"budget_nanos": 5000, "models": ["gpt-*"]})
    assert first.budget_nanos == 5000 and first.models == ("gpt-*",)
    kept = await store.put_limits(conn, SCOPE, {"budget_nanos": 9999}, only_new=True)
    assert kept == first
    seeded = await store.put_limits(conn, "global", {"budget_nanos": 7000}, only_new=True)
    assert seeded.budget_nanos == 7000
    changed = await store.put_limits(conn, SCOPE, {"budget_nanos": 9999, "rpm": 60})
    assert (changed.budget_nanos, changed.rpm, changed.models) == (9999, 60, None)
    assert changed.version == first.version + 1


async def test_views_show_each_scope_with_the_other_daemons_books(connect: Connect) -> None:
    stores = {name: FleetStore(name) for name in ("a", "b", "c")}
    conns = {name: await connect() for name in stores}
    await stores["a"].put_limits(conns["a"], SCOPE, {"budget_nanos": BUDGET})
    for name, own in (("a", 100), ("b", 200), ("c", 400)):
        s, c = stores[name], conns[name]
        await s.sync(c, ask(need=1000, grow=False))
        await s.sync(c, ask(own=own, need=1000, grow=False))
    # a scope with no budget: spend is only reported, nothing leased
    await stores["b"].sync(conns["b"], ask("global", own=50, need=1000))
    for name, spent in (("a", 600), ("b", 500), ("c", 300)):
        views = await stores[name].views(conns[name])
        assert sorted(v.limits.scope for v in views) == ["global", SCOPE]
        mine = view_of(views)
        assert (mine.others_spent_nanos, mine.others_held_nanos, mine.daemons) == (
            spent,
            2000,
            3,
        )
        assert mine.limits.budget_nanos == BUDGET
    unlimited = view_of(await stores["a"].views(conns["a"]), "global")
    assert unlimited.limits.budget_nanos is None
    assert (unlimited.others_spent_nanos, unlimited.others_held_nanos) == (50, 0)
    assert unlimited.daemons == 2
    alone = view_of(await stores["b"].views(conns["b"]), "global")
    assert (alone.others_spent_nanos, alone.others_held_nanos, alone.daemons) == (0, 0, 1)


async def test_a_daemon_clock_far_ahead_does_not_reset_the_fleets_window(
    connect: Connect,
) -> None:
    a, b = FleetStore("a"), FleetStore("b")
    c_a, c_b = await connect(), await connect()
    limits = await a.put_limits(c_a, SCOPE, {"budget_nanos": 10_000, "window": "1h"})
    end = limits.resets_at
    assert end is not None
    await a.sync(c_a, ask(need=4000, window_end=end))
    await a.sync(c_a, ask(own=4000, window_end=end, grow=False))
    # b's clock is a day ahead: it believes the window reset long ago.
    ahead = await b.sync(c_b, ask(need=1000, window_end=end + 86_400))
    assert ahead.window_end == end  # the fleet's window stays where it is
    assert ahead.others_spent_nanos == 4000  # and a's spend still counts
    assert ahead.reported_nanos == 0  # b's figure was for a window the fleet is not in


async def test_a_row_a_sync_made_is_seeded_with_the_first_limits(connect: Connect) -> None:
    conn = await connect()
    store = FleetStore("a")
    await store.sync(conn, ask(need=0, grow=False))  # the row exists, with no limits
    seeded = await store.put_limits(conn, SCOPE, {"budget_nanos": 5000}, only_new=True)
    assert seeded.budget_nanos == 5000
    kept = await store.put_limits(conn, SCOPE, {"budget_nanos": 9}, only_new=True)
    assert kept.budget_nanos == 5000
