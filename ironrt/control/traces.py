"""Handlers of `GET /v1/traces` (filtered, newest first, paged by an opaque cursor) and
`GET /v1/traces/{id}`."""

from __future__ import annotations

from typing import cast

from ironrt.control.context import DaemonContext
from ironrt.control.http import NotFound, Request, Response, json_response
from ironrt.control.usage import agent_id, time_range
from ironrt.errors import InvalidRequest
from ironrt.protocol import TraceList
from ironrt.store import traces as trace_store


async def traces(req: Request, ctx: DaemonContext) -> Response:
    since, until = time_range(req)
    status = req.choice("status")
    q = trace_store.TraceQuery(
        agent_id=await agent_id(req, ctx),
        project=req.text("project"),
        model=req.text("model"),
        status=None if status == "any" else cast(trace_store.Status, status),
        since=since,
        until=until,
        before_id=_cursor(req),
    )
    found, next_cursor = await trace_store.page(ctx.db, q, int(req.number("limit")))
    return json_response(TraceList(traces=found, next_cursor=next_cursor))


def _cursor(req: Request) -> int | None:
    raw = req.text("cursor")
    if raw is None:
        return None
    try:
        return trace_store.decode_cursor(raw)
    except ValueError:
        raise InvalidRequest(
            "`cursor` is not one this daemon gave: pass back a page's `next_cursor` as it is",
            field="cursor",
        ) from None


async def get_trace(req: Request, ctx: DaemonContext) -> Response:
    raw = req.params["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidRequest(f"a trace id is a whole number, not {raw[:40]!r}", field="id")
    found = await trace_store.get(ctx.db, int(raw))
    if found is None:
        raise NotFound(
            f"no trace {raw}: never recorded, or pruned as older than IRONRT_TRACE_RETENTION"
        )
    return json_response(found)
