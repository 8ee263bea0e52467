"""Handler of `GET /v1/usage`, and what the usage and traces handlers both read from a
request: the agent filter, and times given as ISO 8601 or as a duration before now."""

from __future__ import annotations

import datetime as dt
from typing import cast

from ironrt.control.context import DaemonContext
from ironrt.control.http import Request, Response, json_response
from ironrt.errors import AgentNotFound, InvalidRequest
from ironrt.store import usage as usage_store


async def agent_id(req: Request, ctx: DaemonContext) -> str | None:
    """The `agent` filter as an agent id: given as id, prefix or name of one of the
    daemon's agents or a library record, or as the id (or unique prefix) of an agent since
    removed whose calls are still on the books. None: every agent."""
    ref = req.text("agent")
    if not ref:
        return None
    try:
        return (await ctx.supervisor.get(ref)).id
    except AgentNotFound:
        found = await usage_store.recorded_agent(ctx.db, ref)
        if found is None:
            raise
        return found


def time_range(req: Request) -> tuple[str | None, str | None]:
    """`since` and `until` as stored times; a clear 400 naming the one that is not a time,
    or `until` when it is not after `since`."""
    now = dt.datetime.now(dt.timezone.utc)
    since, until = (_time(req, name, now) for name in ("since", "until"))
    if since is not None and until is not None and until <= since:
        raise InvalidRequest(f"`until` ({until}) must be after `since` ({since})", field="until")
    return since, until


def _time(req: Request, name: str, now: dt.datetime) -> str | None:
    raw = req.text(name)
    if raw is None:
        return None
    try:
        return usage_store.parse_time(raw, now)
    except ValueError as exc:
        raise InvalidRequest(f"`{name}`: {exc}", field=name) from None


async def usage(req: Request, ctx: DaemonContext) -> Response:
    by = cast(usage_store.Group, req.choice("by"))
    since, until = time_range(req)
    found = await usage_store.usage(
        ctx.db,
        by,
        since=since,
        until=until,
        agent_id=await agent_id(req, ctx),
        project=req.text("project"),
    )
    return json_response(found)
