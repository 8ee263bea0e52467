"""A stopping daemon's fleet manager hands its leases back, bounded, and says so when it
cannot: a real PostgreSQL, the manager in process (its bound shortened, not its code).

A lease not handed back stays charged to the fleet until it expires, so a stop that
could not reach the database must leave a line in the daemon's log saying which and why:
an e2e run once ended with a lease kept and nothing in any log to tell why."""

from __future__ import annotations

import logging
import time

import anyio
import asyncpg
import pytest

from ironrt.fleet import manager
from ironrt.fleet.manager import FleetLedger
from ironrt.governance.ledger import Ledger

pytestmark = pytest.mark.anyio

SCOPE = "project:team"


async def lease_row(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT granted_nanos, reported_nanos FROM ironrt_fleet_leases WHERE scope = $1",
            SCOPE,
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["granted_nanos"]), int(row["reported_nanos"])


async def started_fleet(
    url: str, spent_nanos: int, monkeypatch: pytest.MonkeyPatch | None = None, bound: float = 0
) -> FleetLedger:
    """A manager whose shared scope spent `spent_nanos` before it joined the fleet: its
    first round reports it (a row in the leases table). `bound`: each database operation's
    (`OP_TIMEOUT_S`), shortened once the manager started."""
    ledger = Ledger()
    ledger.scope(SCOPE).spent_nanos = spent_nanos
    fleet = FleetLedger(url, ledger, "daemon-under-test", poll_s=0.2)
    await fleet.start()
    assert fleet.available, fleet.error
    if monkeypatch is not None:
        monkeypatch.setattr(manager, "OP_TIMEOUT_S", bound)
    return fleet


async def timed_stop(
    fleet: FleetLedger, caplog: pytest.LogCaptureFixture
) -> tuple[float, list[object]]:
    """Stop `fleet`: how long it took, and the `fields` of each "not handed back" line."""
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ironrt.fleet"):
        await fleet.release()
    took = time.monotonic() - began
    lines = [r for r in caplog.records if "not handed back at stop" in r.getMessage()]
    return took, [getattr(r, "fields", None) for r in lines]


async def test_a_stop_reports_the_spend_since_the_last_sync(ledger_url: str) -> None:
    fleet = await started_fleet(ledger_url, 1_000)
    assert await lease_row(ledger_url) == (1_000, 1_000)
    scope = fleet.ledger.scope(SCOPE)
    assert scope.lease is not None
    scope.lease.own_nanos += 500  # a call settled since (what `Ledger.settle` adds)
    await fleet.release()
    assert await lease_row(ledger_url) == (1_500, 1_500)


async def test_a_stop_the_database_does_not_answer_is_bounded_and_logged(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = await started_fleet(ledger_url, 1_000, monkeypatch, bound=0.5)
    scope = fleet.ledger.scope(SCOPE)
    assert scope.lease is not None
    scope.lease.own_nanos += 500
    # Another session holds the leases table: the hand-back's transaction waits on it.
    blocker = await asyncpg.connect(ledger_url)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE ironrt_fleet_leases IN ACCESS EXCLUSIVE MODE")
        took, lines = await timed_stop(fleet, caplog)
        await tx.rollback()
    finally:
        await blocker.close()
    assert took < 0.5 * 2 + 2.0  # its bound, not the database's patience
    assert lines == [{"error": "the database did not answer within 0.5 s"}]
    # Nothing was reported: the row is as the last sync left it (charged until it expires).
    assert await lease_row(ledger_url) == (1_000, 1_000)


async def test_a_stop_waits_for_a_round_in_progress_within_twice_its_bound(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = await started_fleet(ledger_url, 1_000, monkeypatch, bound=0.2)
    done = anyio.Event()

    async def overrunning_round() -> None:  # holds the manager's lock past its own bound
        async with fleet._lock:
            await done.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(overrunning_round)
        await anyio.wait_all_tasks_blocked()
        took, lines = await timed_stop(fleet, caplog)
        done.set()
    assert 0.4 <= took < 0.4 + 2.0
    assert lines == [{"error": "a round in progress did not end within 0.4 s"}]
    assert await lease_row(ledger_url) == (1_000, 1_000)
