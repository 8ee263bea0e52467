"""A call's events (PII found, a stream cut, ...), published behind its answer.

Publishing an event stores it: a commit in a worker thread (`EventBus`), ~0.3-0.5 ms
that a call with PII in its prompt paid before its answer, once per event. Nothing about
the answer depends on them, so `settle` hands them here and goes on; one task publishes
them in the order the calls settled, as many at a time as have queued.

What the control API reads is never behind: `drain` waits until every event handed over
before it is stored (the daemon's reads await it, `Database.before_read`), and the live
subscribers get each event as soon as it is stored, as before.
"""

from __future__ import annotations

import logging
from collections import deque

import anyio

from ironrt.events import EventBus
from ironrt.protocol import Event
from ironrt.store.watermark import Watermark

log = logging.getLogger("ironrt.router")


class Outbox:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._queue: deque[Event] = deque()
        #: Events handed over, and events published (stored or refused by the disk).
        self._handed = 0
        self._published = Watermark()
        self._wake = anyio.Event()
        self._running = False
        #: The task publishing now (a read it makes must not wait for itself).
        self._publisher: int | None = None

    def put(self, event: Event) -> None:
        self._queue.append(event)
        self._handed += 1
        self._wake.set()

    async def drain(self) -> None:
        """Wait until every event handed over before this call is published (at once if
        asked from the publishing itself: it would be waiting for itself)."""
        target = self._handed
        if self._published.value >= target or self._publisher == anyio.get_current_task().id:
            return
        if not self._running:  # no publisher task (yet, or any more): publish here
            await self._publish_queued()
            return
        await self._published.reach(target)

    async def run(self) -> None:
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await self._publish_queued()
        finally:
            self._running = False
            with anyio.CancelScope(shield=True):
                await self._publish_queued()

    async def _publish_queued(self) -> None:
        while self._queue:
            batch = list(self._queue)
            self._queue.clear()
            self._publisher = anyio.get_current_task().id
            try:
                await self.bus.publish_many(batch)
            except Exception:  # the bus logs a full disk itself; this is a bug
                log.exception("could not publish %d call events", len(batch))
            finally:
                self._publisher = None
            self._published.advance(self._published.value + len(batch))
