"""The outbox on a real event bus and database: events published in the order they were
handed over, reads waiting for them, and a read made while publishing (looking up an
agent no one knows) not waiting for itself."""

from __future__ import annotations

from pathlib import Path

import anyio

from ironrt.events import EventBus
from ironrt.protocol import PiiAlert
from ironrt.router.outbox import Outbox
from ironrt.store import events as event_store
from ironrt.store.db import Database


def test_events_in_order_reads_wait_and_a_lookup_while_publishing_does_not_hang(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        db = await Database.open(tmp_path / "ironrt.db")
        bus = EventBus(db)  # no resolver: every agent is looked up in the agents table
        outbox = Outbox(bus)
        db.before_read = outbox.drain
        async with anyio.create_task_group() as tg:
            tg.start_soon(outbox.run)
            for i in range(50):
                outbox.put(PiiAlert(agent_id=f"gone-{i % 3}", direction="request", count=i))
            with anyio.fail_after(10):  # a publisher waiting for itself would hang here
                stored = await event_store.query(db, since=0, limit=100)
            assert [e.count for e in stored] == list(range(50))  # type: ignore[attr-defined]
            outbox.put(PiiAlert(agent_id="gone-0", direction="response", count=99))
            with anyio.fail_after(10):
                last = await event_store.last_id(db)
            assert last == 51
            tg.cancel_scope.cancel()
        bus.close()
        await db.close()

    anyio.run(main)


def test_events_handed_over_with_no_publisher_are_published_by_the_reader(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        db = await Database.open(tmp_path / "ironrt.db")
        bus = EventBus(db)
        outbox = Outbox(bus)
        db.before_read = outbox.drain
        outbox.put(PiiAlert(agent_id="a", direction="request", count=1))
        stored = await event_store.query(db, since=0, limit=10)
        assert [e.kind for e in stored] == ["PiiAlert"]
        bus.close()
        await db.close()

    anyio.run(main)
