"""The event bus: every state change the daemon wants people to see.

An event is written to the store first (so `ironrt events` after the fact shows it) and then
offered to live subscribers (`events -f`, the telemetry sink). A subscriber that cannot
keep up loses events rather than slowing the daemon: its bounded buffer drops, it never
blocks a publisher.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from ironrt.protocol import Event
from ironrt.store import events as event_store
from ironrt.store.db import Database

log = logging.getLogger("ironrt.events")


def utcnow() -> str:
    return (
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def wall_clock(epoch_s: float) -> str:
    """A Unix time as `utcnow` writes it (UTC, ISO 8601, milliseconds, `Z`)."""
    moment = dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventBus:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._subscribers: set[MemoryObjectSendStream[Event]] = set()

    async def publish(self, kind: str, agent_id: str | None = None, **data: Any) -> Event:
        ts = utcnow()
        try:
            event_id = await event_store.insert(self._db, ts, kind, agent_id, data)
        except sqlite3.Error as exc:
            # A full disk must not stop the daemon: live subscribers still get the event.
            log.error("could not store event %s: %s", kind, exc)
            event_id = 0
        event = Event(id=event_id, ts=ts, kind=kind, agent_id=agent_id, data=data)
        for stream in list(self._subscribers):
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                pass  # slow subscriber: drop rather than stall the daemon
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(stream)
        return event

    @asynccontextmanager
    async def subscribe(self, buffer: int = 1000) -> AsyncIterator[AsyncIterator[Event]]:
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        self._subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
