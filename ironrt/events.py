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

import logging
import math
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ironrt.protocol.events import Event
from ironrt.store import events as event_store
from ironrt.store.db import Database
from ironrt.store.writer import BatchWriter

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
    return wall_clock(time.time())


#: The last second `wall_clock` formatted, and its text (a call settles in the same second
#: as the one before it, nearly always). One tuple, replaced whole: threads may stamp too.
_second: tuple[int, str] = (-(2**62), "")


def wall_clock(epoch_s: float) -> str:
    """A Unix time as `utcnow` writes it (UTC, ISO 8601, milliseconds, `Z`): exactly what
    `datetime.fromtimestamp(epoch_s, utc).isoformat(timespec="milliseconds")` gives (its
    rounding to microseconds, half to even, then cut to milliseconds), at a quarter of
    its cost, since the seconds part is formatted once per second. Settling a call
    stamps one."""
    frac, whole = math.modf(epoch_s)
    us = round(frac * 1e6)
    second = int(whole)
    if us >= 1_000_000:
        second, us = second + 1, us - 1_000_000
    elif us < 0:
        second, us = second - 1, us + 1_000_000
    global _second
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{us // 1000:03d}Z"


#: Batches one publisher commits before handing the commit to the next waiting one.
_ROUNDS = 4


@dataclass(eq=False, slots=True)
class _Queued:
    event: Event
    done: anyio.Event = field(default_factory=anyio.Event)
    #: Woken to commit what is queued (not because its event was committed).
    lead: bool = False
    #: Its publisher waits on it (the last of the events it published).
    waits: bool = True


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
        # Group commit: publishers queue their events; whoever finds no commit running
        # stores everything queued in one transaction (one thread hop through its own
        # connection), then offers the batch in id order, and goes on while more came.
        # So live subscribers see ids in increasing order, and a burst of events from
        # many tasks costs one commit, not one each.
        self._pending: list[_Queued] = []
        self._committing = False
        self._writer: BatchWriter | None = None
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
        await self.publish_many([event])
        return event

    async def publish_many(self, events: list[Event]) -> None:
        """`publish` for each of `events`, in order, in as few commits as they fit."""
        for event in events:
            if event.agent_id is not None and event.agent_name is None:
                who = await self._identity(event.agent_id)
                if who is not None:
                    event.agent_name, project = who
                    if event.project is None:
                        event.project = project
        if not events:
            return
        ts = utcnow()
        queued = []
        for event in events:
            event.ts = ts
            queued.append(_Queued(event, waits=False))
        queued[-1].waits = True
        self._pending += queued
        mine = queued[-1]
        if self._committing:
            # The publisher committing now takes them in a batch. Shielded: a waiter may
            # be handed the commit, and the bus must never be left without a committer.
            with anyio.CancelScope(shield=True):
                await mine.done.wait()
            if not mine.lead:
                return
            # Handed the commit: the last committer did its share of rounds.
        self._committing = True
        with anyio.CancelScope(shield=True):  # taken: stored and offered, whatever
            for _ in range(_ROUNDS):
                batch, self._pending = self._pending, []
                await self._store([q.event for q in batch])
                for one in batch:
                    self._offer(one.event)
                    one.done.set()
                if not self._pending:
                    break
            else:
                # More keep coming: the oldest waiter commits the rest, this publisher
                # (a settling call, say) has waited long enough.
                heir = next(q for q in self._pending if q.waits)
                heir.lead = True
                heir.done.set()
                return
        self._committing = False

    async def _store(self, events: list[Event]) -> None:
        """One transaction for the batch; each event gets its row id (0: the disk refused
        it: live subscribers still get it, followers skip it, having no place for it)."""
        try:
            if self._writer is None and self._db.path is not None:
                self._writer = BatchWriter.open(self._db.path, checkpoints=False)
            statement = [(event_store.INSERT_SQL, [event_store.row(e) for e in events])]
            if self._writer is not None:
                ids = await self._writer.write_many(statement, event_store.INSERTS)
            else:
                ids = await self._db.write_many(statement, event_store.INSERTS)
        except sqlite3.Error as exc:
            # A full disk must not stop the daemon: live subscribers still get them.
            log.error("could not store %d events (%s): %s", len(events), events[0].kind, exc)
            ids = [0] * len(events)
        for event, event_id in zip(events, ids, strict=True):
            event.id = event_id

    def _offer(self, event: Event) -> None:
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

    def close(self) -> None:
        """Close the bus's own connection to the store (the daemon's is closed apart)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

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
    ) -> AsyncGenerator[Sequence[Event], None]:
        """Every event after id `since` that `match`es, stored and then live, in id order,
        none missed, none twice, in batches: whatever is ready at once comes as one list
        (a follower of a busy bus pays its per-item costs, a write, a wake-up, once per
        batch, not once per event). `since` None: the newest `backlog` events first (all
        the retained ones when `backlog` is None). Yields an empty list after `idle_s`
        seconds without an event (a keep-alive for the caller to send)."""
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
                    yield found
                    last = found[-1].id
                else:
                    last = await event_store.last_id(self._db)
            wait = idle_s if idle_s is not None else math.inf
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
                    if page:
                        yield page
                    last = max(last, read_to)
                # Then live, until the buffer overflows again.
                while not sub.overflowed:
                    ready = _ready(receive)
                    if not ready:
                        with anyio.move_on_after(wait):
                            ready = [await receive.receive()]
                        if not ready:
                            yield []
                            continue
                        ready += _ready(receive)
                    if sub.overflowed:
                        break  # the gap is read back from the store, these with it
                    batch = []
                    for live in ready:
                        if live.id <= last:
                            continue  # read from the store already (or never stored)
                        last = live.id
                        if match(live):
                            batch.append(live)
                    if batch:
                        yield batch
                # Drop what the buffer holds: it is all in the store, after `last`.
                _ready(receive)


def _ready(receive: MemoryObjectReceiveStream[Event]) -> list[Event]:
    """Every event the buffer holds now, without waiting."""
    ready: list[Event] = []
    while True:
        try:
            ready.append(receive.receive_nowait())
        except anyio.WouldBlock:
            return ready
