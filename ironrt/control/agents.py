"""Handlers of the calls on agents: start, list, get, change, stop, restart, remove, wait,
metrics and logs. Each one only reads its request and asks the supervisor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from ironrt.calls import START_AGENT
from ironrt.control.context import DaemonContext
from ironrt.control.http import Request, Response, json_response
from ironrt.protocol import StartRequest, StopRequest, UpdateRequest
from ironrt.supervisor import logfiles
from ironrt.supervisor.managed import Managed

_TEXT = "text/plain; charset=utf-8"


async def list_agents(req: Request, ctx: DaemonContext) -> Response:
    # Awaited: library-mode records are read from the store for each listing.
    return json_response(await ctx.supervisor.listing(metrics=req.flag("metrics")))


async def start_agent(req: Request, ctx: DaemonContext) -> Response:
    body = await req.json(StartRequest)
    return json_response(await ctx.supervisor.start(body), START_AGENT.status)


async def get_agent(req: Request, ctx: DaemonContext) -> Response:
    return json_response(await ctx.supervisor.get(req.params["ref"]))


async def update_agent(req: Request, ctx: DaemonContext) -> Response:
    body = await req.json(UpdateRequest)
    return json_response(await ctx.supervisor.update(req.params["ref"], body))


async def stop_agent(req: Request, ctx: DaemonContext) -> Response:
    body = await req.json(StopRequest)
    return json_response(await ctx.supervisor.stop(req.params["ref"], body.timeout))


async def restart_agent(req: Request, ctx: DaemonContext) -> Response:
    body = await req.json(StopRequest)
    return json_response(await ctx.supervisor.restart(req.params["ref"], body.timeout))


async def remove_agent(req: Request, ctx: DaemonContext) -> Response:
    timeout = req.number("timeout")
    force = req.flag("force")
    return json_response(await ctx.supervisor.remove(req.params["ref"], force, timeout))


async def wait_agent(req: Request, ctx: DaemonContext) -> Response:
    timeout = req.number("timeout")
    return json_response(await ctx.supervisor.wait(req.params["ref"], timeout))


async def agent_metrics(req: Request, ctx: DaemonContext) -> Response:
    metrics = await ctx.supervisor.metrics(req.params["ref"])
    metrics.circuits = ctx.circuits()
    return json_response(metrics)


async def agent_logs(req: Request, ctx: DaemonContext) -> Response:
    m, path = await ctx.supervisor.log_file(req.params["ref"])
    lines = int(req.number("tail"))
    keep = m.record.log_keep
    head, position = await anyio.to_thread.run_sync(logfiles.tail_lines, path, lines, keep)
    if not req.flag("follow"):
        return Response(200, head, _TEXT)
    return Response(200, stream=_follow_log(ctx, m, path, head, position), content_type=_TEXT)


async def _follow_log(
    ctx: DaemonContext, m: Managed, path: Path, head: bytes, position: logfiles.Position
) -> AsyncIterator[bytes]:
    """The tail already read, then what the agent writes, until it has ended for good (not
    between two restarts) and what it wrote last was sent, or the daemon stops."""
    if head:
        yield head
    keep = m.record.log_keep
    follower = await anyio.to_thread.run_sync(logfiles.Follower, path, position, keep)
    try:
        idle_after_end = 0
        while not ctx.stopping.is_set():
            data = await anyio.to_thread.run_sync(follower.read_new)
            if data:
                yield data
                continue
            if ctx.supervisor.finished(m):  # ended for good: not between two restarts
                idle_after_end += 1
                if idle_after_end > 2:  # drained what the ended agent wrote
                    return
            else:
                idle_after_end = 0
            await anyio.sleep(0.1)
    finally:
        follower.close()
