"""Handlers of the calls that show what happened: events (listed or followed). They read
the store; only a followed stream also listens to the event bus. Usage and traces have
their own modules (`usage.py`, `traces.py`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing

import anyio
import msgspec

from ironrt.control.context import DaemonContext
from ironrt.control.http import Request, Response, json_response
from ironrt.errors import InvalidRequest
from ironrt.events import Filter
from ironrt.protocol import EVENT_KINDS, EVENT_TYPES, Event, EventList
from ironrt.store import events as event_store


async def _agent_id(req: Request, ctx: DaemonContext) -> str | None:
    """The `agent` filter as an agent id (given as id, prefix or name; one of the daemon's
    agents or a library-mode record); None: every agent."""
    ref = req.text("agent")
    return (await ctx.supervisor.get(ref)).id if ref else None


#: Seconds between SSE `: keepalive` comments on a quiet stream (proxies and clients
#: that time out idle connections keep it open; a dead client is noticed).
KEEPALIVE_S = 15.0


def _kinds(req: Request) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(req.texts("kind")))
    unknown = [k for k in kinds if k not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(
            f"unknown event kind {unknown[0]!r}; kinds: {', '.join(EVENT_KINDS)}", field="kind"
        )
    return kinds


def _last_event_id(req: Request) -> int | None:
    """SSE's `Last-Event-ID` header: resume after that id (as `since` does)."""
    raw = req.headers.get("last-event-id", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise InvalidRequest(
            f"`Last-Event-ID` must be an event id (a whole number >= 0), not {raw[:40]!r}",
            field="Last-Event-ID",
        )
    return int(raw)


async def events(req: Request, ctx: DaemonContext) -> Response:
    match = Filter(await _agent_id(req, ctx), _kinds(req), req.text("project"))
    since = int(req.number("since"))
    limit = int(req.number("limit"))
    if "text/event-stream" in req.headers.get("accept", ""):
        resume = _last_event_id(req)
        start = resume if resume is not None else since
        return Response(200, stream=_sse(ctx, match, start), content_type="text/event-stream")
    if not req.flag("follow"):
        found = await event_store.query(
            ctx.db,
            agent_id=match.agent_id,
            kinds=list(match.kinds) or None,
            project=match.project,
            since=since,
            limit=limit,
        )
        return json_response(EventList(events=found))
    # Without `since`: the newest `limit` events, then live; with it, every one after it
    # (a client that reconnects with its last id misses nothing).
    followed = ctx.bus.follow(since or None, match, backlog=limit)
    stream = _until_stopping(ctx, _ndjson(followed))
    return Response(200, stream=stream, content_type="application/x-ndjson")


async def _ndjson(followed: AsyncGenerator[Sequence[Event], None]) -> AsyncGenerator[bytes, None]:
    async with aclosing(followed):
        async for batch in followed:
            if batch:
                yield b"".join(msgspec.json.encode(event) + b"\n" for event in batch)


async def _sse(ctx: DaemonContext, match: Filter, since: int) -> AsyncIterator[bytes]:
    """Server-Sent Events: `id:` the event's sequence number (what `Last-Event-ID` sends
    back on a reconnect), `event:` its kind, `data:` its JSON; a comment when quiet."""
    yield b"retry: 1000\n\n"
    followed = ctx.bus.follow(since, match, idle_s=KEEPALIVE_S)
    async with aclosing(_until_stopping(ctx, _sse_frames(followed))) as chunks:
        async for chunk in chunks:
            yield chunk


async def _sse_frames(
    followed: AsyncGenerator[Sequence[Event], None],
) -> AsyncGenerator[bytes, None]:
    """A batch of events as one chunk of frames (one write for all of them)."""
    async with aclosing(followed):
        async for batch in followed:
            if not batch:
                yield b": keepalive\n\n"
                continue
            yield b"".join(
                b"id: %d\nevent: %s\ndata: %s\n\n"
                % (event.id, event.kind.encode(), msgspec.json.encode(event))
                for event in batch
            )


async def _until_stopping(
    ctx: DaemonContext, chunks: AsyncGenerator[bytes, None]
) -> AsyncGenerator[bytes, None]:
    """The stream, until its client leaves or the daemon stops (the streams it reads are
    closed with it: the bus forgets the follower at once)."""
    async with aclosing(chunks), aclosing(_cancel_on_stopping(ctx, chunks)) as guarded:
        async for chunk in guarded:
            yield chunk


async def _cancel_on_stopping(
    ctx: DaemonContext, chunks: AsyncIterator[bytes]
) -> AsyncGenerator[bytes, None]:
    with anyio.CancelScope() as scope:

        async def stop_on_shutdown() -> None:
            await ctx.stopping.wait()
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_shutdown)
            async for chunk in chunks:
                yield chunk
            tg.cancel_scope.cancel()
