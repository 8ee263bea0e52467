"""The event bus: every state change the daemon wants people to see.

An event (a typed Struct of `ironrt.protocol.events`) is stamped (its time, the agent's
name and project), written to the store first (so `ironrt events` after the fact shows it,
and its row id is its sequence number) and then offered to live subscribers. Publishing
never waits for a subscriber: each has a bounded buffer.

What happens when a buffer is full depends on who listens. A plain `subscribe`r (a
telemetry sink that may lose a few) drops and the drop is counted. A `follow`er (`events
-f`, SSE) must miss nothing: the overflow only marks it, and it reads the gap back from the
store by id (every event offered live is stored already), then goes on live. Delivered ids
strictly increase, none twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ironrt.protocol.events import Event
from ironrt.store import events as event_store
from ironrt.store.db import Database

log = logging.getLogger("ironrt.events")

E = TypeVar("E", bound=Event)
#: An agent's name and project, by its id (None: not an agent this resolver knows).
Resolver = Callable[[str], tuple[str, str | None] | None]

#: Agents whose name and project the bus remembers (an agent removed from the supervisor
#: still gets its name on its last events).
_KNOWN_MAX = 4096
#: Events a follower reads from the store at a time when catching up.
PAGE = 500


def utcnow() -> str:
    return (
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def wall_clock(epoch_s: float) -> str:
    """A Unix time as `utcnow` writes it (UTC, ISO 8601, milliseconds, `Z`)."""
    moment = dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False, slots=True)
class _Subscriber:
    send: MemoryObjectSendStream[Event]
    #: True: it keeps up by reading gaps from the store; False: it drops when full.
    lossless: bool
    #: Events that did not fit since it last caught up (a follower re-reads them).
    overflowed: bool = False
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class Filter:
    """What a follower wants: the same filter on the store and on live events."""

    agent_id: str | None = None
    kinds: tuple[str, ...] = ()
    project: str | None = None

    def __call__(self, event: Event) -> bool:
        return (
            (self.agent_id is None or event.agent_id == self.agent_id)
            and (not self.kinds or event.kind in self.kinds)
            and (self.project is None or event.project == self.project)
        )


class EventBus:
    def __init__(self, db: Database, resolve: Resolver | None = None) -> None:
        self._db = db
        #: Who an agent is (the daemon's supervisor knows its agents); unknown ones are
        #: looked up in the agents table (library-mode records), once.
        self.resolve = resolve
        self._known: dict[str, tuple[str, str | None]] = {}
        self._subscribers: set[_Subscriber] = set()
        # Stored and offered in one turn: live subscribers see ids in increasing order.
        self._lock = anyio.Lock()
        #: Events plain subscribers dropped (slow consumers), over the bus's life.
        self.dropped = 0

    async def _identity(self, agent_id: str) -> tuple[str, str | None] | None:
        found = self.resolve(agent_id) if self.resolve is not None else None
        if found is None:
            found = self._known.get(agent_id)
        if found is None:
            try:
                found = await event_store.agent_identity(self._db, agent_id)
            except sqlite3.Error:
                found = None
        if found is not None:
            if len(self._known) >= _KNOWN_MAX:
                self._known.clear()
            self._known[agent_id] = found
        return found

    async def publish(self, event: E) -> E:
        """Stamp, store and offer `event`; returns it with its `id` (0: the disk refused
        it: live subscribers still get it, followers skip it, having no place for it)."""
        if event.agent_id is not None and event.agent_name is None:
            who = await self._identity(event.agent_id)
            if who is not None:
                event.agent_name, project = who
                if event.project is None:
                    event.project = project
        async with self._lock:
            event.ts = utcnow()
            try:
                event.id = await event_store.insert(self._db, event)
            except sqlite3.Error as exc:
                # A full disk must not stop the daemon: live subscribers still get it.
                log.error("could not store event %s: %s", event.kind, exc)
                event.id = 0
            for sub in list(self._subscribers):
                try:
                    sub.send.send_nowait(event)
                except anyio.WouldBlock:
                    sub.overflowed = True  # a follower re-reads it from the store
                    if not sub.lossless:
                        sub.dropped += 1
                        self.dropped += 1
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._subscribers.discard(sub)
        return event

    @asynccontextmanager
    async def _subscription(
        self, buffer: int, lossless: bool
    ) -> AsyncIterator[tuple[_Subscriber, MemoryObjectReceiveStream[Event]]]:
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        sub = _Subscriber(send, lossless)
        self._subscribers.add(sub)
        try:
            async with receive:
                yield sub, receive
        finally:
            self._subscribers.discard(sub)
            send.close()

    @asynccontextmanager
    async def subscribe(self, buffer: int = 1000) -> AsyncIterator[AsyncIterator[Event]]:
        """Live events only; when the buffer is full they are dropped (and counted)."""
        async with self._subscription(buffer, lossless=False) as (_, receive):
            yield receive

    async def follow(
        self,
        since: int | None,
        match: Filter,
        *,
        backlog: int | None = None,
        idle_s: float | None = None,
        buffer: int = 1000,
    ) -> AsyncGenerator[Event | None, None]:
        """Every event after id `since` that `match`es, stored and then live, in id order,
        none missed, none twice. `since` None: the newest `backlog` events first (all the
        retained ones when `backlog` is None). Yields None after `idle_s` seconds without
        an event (a keep-alive for the caller to send)."""
        async with self._subscription(buffer, lossless=True) as (sub, receive):
            last = since or 0
            if since is None and backlog is not None:
                found = await event_store.query(
                    self._db,
                    agent_id=match.agent_id,
                    kinds=list(match.kinds) or None,
                    project=match.project,
                    limit=backlog,
                )
                if found:
                    for event in found:
                        yield event
                    last = found[-1].id
                else:
                    last = await event_store.last_id(self._db)
            while True:
                # The store from `last` on (the start, or a gap left by an overflow).
                sub.overflowed = False
                more = True
                while more:
                    page, read_to, more = await event_store.after(
                        self._db,
                        since=last,
                        limit=PAGE,
                        agent_id=match.agent_id,
                        kinds=list(match.kinds) or None,
                        project=match.project,
                    )
                    for event in page:
                        yield event
                    last = max(last, read_to)
                # Then live, until the buffer overflows again.
                while not sub.overflowed:
                    live: Event | None = None
                    with anyio.move_on_after(idle_s if idle_s is not None else float("inf")):
                        live = await receive.receive()
                    if live is None:
                        yield None
                        continue
                    if sub.overflowed:
                        break  # the gap is read back from the store, this event with it
                    if live.id <= last:
                        continue  # read from the store already (or never stored)
                    last = live.id
                    if match(live):
                        yield live
                # Drop what the buffer holds: it is all in the store, after `last`.
                while True:
                    try:
                        receive.receive_nowait()
                    except anyio.WouldBlock:
                        break
