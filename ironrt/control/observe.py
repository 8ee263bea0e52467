"""Handlers of the calls that show what happened: events (listed or followed), usage and
traces. They read the store; only a followed stream also listens to the event bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import msgspec

from ironrt.control.context import DaemonContext
from ironrt.control.http import Request, Response, json_response
from ironrt.protocol import EventList, TraceList
from ironrt.store import events as event_store
from ironrt.store import traces as trace_store


async def _agent_id(req: Request, ctx: DaemonContext) -> str | None:
    """The `agent` filter as an agent id (given as id, prefix or name; one of the daemon's
    agents or a library-mode record); None: every agent."""
    ref = req.text("agent")
    return (await ctx.supervisor.get(ref)).id if ref else None


async def events(req: Request, ctx: DaemonContext) -> Response:
    agent_id = await _agent_id(req, ctx)
    since = int(req.number("since"))
    limit = int(req.number("limit"))
    if not req.flag("follow"):
        found = await event_store.query(ctx.db, agent_id=agent_id, since=since, limit=limit)
        return json_response(EventList(events=found))
    stream = _follow_events(ctx, agent_id, since, limit)
    return Response(200, stream=stream, content_type="application/x-ndjson")


async def _follow_events(
    ctx: DaemonContext, agent_id: str | None, since: int, limit: int
) -> AsyncIterator[bytes]:
    """The backlog after `since`, then live events, one per line, until the daemon stops.
    Subscribed before the backlog is read, so no event falls between the two."""
    async with ctx.bus.subscribe() as live:
        backlog = await event_store.query(ctx.db, agent_id=agent_id, since=since, limit=limit)
        last = backlog[-1].id if backlog else since
        for event in backlog:
            yield msgspec.json.encode(event) + b"\n"
        with anyio.CancelScope() as scope:

            async def stop_on_shutdown() -> None:
                await ctx.stopping.wait()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_on_shutdown)
                async for event in live:
                    if event.id <= last or (agent_id and event.agent_id != agent_id):
                        continue
                    yield msgspec.json.encode(event) + b"\n"
                tg.cancel_scope.cancel()


async def usage(req: Request, ctx: DaemonContext) -> Response:
    by = req.choice("by")
    agent_id = await _agent_id(req, ctx)
    return json_response(await trace_store.usage(ctx.db, by, agent_id))


async def traces(req: Request, ctx: DaemonContext) -> Response:
    agent_id = await _agent_id(req, ctx)
    limit = int(req.number("limit"))
    found = await trace_store.query(ctx.db, agent_id=agent_id, limit=limit)
    return json_response(TraceList(traces=found))
