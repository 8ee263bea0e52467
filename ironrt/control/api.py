"""The control API: one handler per request, all routes in one table.

Every route is declared once below with its request and response Struct; the same table
serves requests and generates `/v1/openapi.json`, so the description cannot drift from
what the daemon does.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
import msgspec

from ironrt._version import __version__
from ironrt.config import Settings
from ironrt.control.http import Request, Response, Router, json_response
from ironrt.control.openapi import openapi_document
from ironrt.errors import InvalidRequest
from ironrt.events import EventBus
from ironrt.protocol import (
    LIMIT_FIELDS,
    PROTOCOL_VERSION,
    Agent,
    AgentList,
    EventList,
    Health,
    LimitsList,
    LimitsUpdate,
    Metrics,
    ScopeLimits,
    StartRequest,
    StopRequest,
    TraceList,
    UpdateRequest,
    Usage,
    Version,
)
from ironrt.store import events as event_store
from ironrt.store import traces as trace_store
from ironrt.store.db import Database
from ironrt.supervisor import logfiles
from ironrt.supervisor.supervisor import Supervisor


@dataclass(slots=True)
class DaemonContext:
    settings: Settings
    db: Database
    bus: EventBus
    supervisor: Supervisor
    router_url: str
    started: float
    provider_keys: Callable[[], dict[str, bool]]
    circuits: Callable[[], dict[str, str]]
    request_shutdown: Callable[[bool], None]
    stopping: anyio.Event


def build(ctx: DaemonContext) -> Router:
    sup = ctx.supervisor
    r = Router()

    async def health(req: Request) -> Response:
        return json_response(
            Health(
                ok=True,
                pid=os.getpid(),
                version=__version__,
                protocol=PROTOCOL_VERSION,
                socket=str(ctx.settings.socket_path),
                home=str(ctx.settings.home),
                router_url=ctx.router_url,
                offline=ctx.settings.offline,
                uptime_s=round(time.monotonic() - ctx.started, 3),
                agents=sup.counts(),
                provider_keys=ctx.provider_keys(),
                circuits=ctx.circuits(),
            )
        )

    async def version(req: Request) -> Response:
        return json_response(Version(version=__version__, protocol=PROTOCOL_VERSION))

    async def openapi(req: Request) -> Response:
        return Response(200, openapi_document(r, __version__))

    async def list_agents(req: Request) -> Response:
        metrics = sup.all_metrics() if req.flag("metrics") else None
        return json_response(AgentList(agents=sup.agents_list(), metrics=metrics))

    async def start_agent(req: Request) -> Response:
        body = await req.json(StartRequest)
        return json_response(await sup.start(body), 201)

    async def get_agent(req: Request) -> Response:
        return json_response(sup.snapshot(sup.find(req.params["ref"])))

    async def update_agent(req: Request) -> Response:
        body = await req.json(UpdateRequest)
        return json_response(await sup.update(req.params["ref"], body))

    async def stop_agent(req: Request) -> Response:
        body = await req.json(StopRequest)
        return json_response(await sup.stop(req.params["ref"], body.timeout))

    async def restart_agent(req: Request) -> Response:
        body = await req.json(StopRequest)
        return json_response(await sup.restart(req.params["ref"], body.timeout))

    async def remove_agent(req: Request) -> Response:
        timeout = req.number("timeout", 10.0, 0, 3600)
        return json_response(await sup.remove(req.params["ref"], req.flag("force"), timeout))

    async def wait_agent(req: Request) -> Response:
        timeout = req.number("timeout", 30.0, 0, 3600)
        return json_response(await sup.wait(req.params["ref"], timeout))

    async def agent_metrics(req: Request) -> Response:
        metrics = sup.metrics(req.params["ref"])
        metrics.circuits = ctx.circuits()
        return json_response(metrics)

    async def agent_logs(req: Request) -> Response:
        m, path = sup.log_file(req.params["ref"])
        lines = int(req.number("tail", 100, 0, 1_000_000))
        keep = m.record.log_keep
        head, position = await anyio.to_thread.run_sync(logfiles.tail_lines, path, lines, keep)
        if not req.flag("follow"):
            return Response(200, head, "text/plain; charset=utf-8")

        async def follow() -> AsyncIterator[bytes]:
            if head:
                yield head
            follower = await anyio.to_thread.run_sync(logfiles.Follower, path, position, keep)
            try:
                idle_after_end = 0
                while not ctx.stopping.is_set():
                    data = await anyio.to_thread.run_sync(follower.read_new)
                    if data:
                        yield data
                        continue
                    if sup.finished(m):  # ended for good: not between two restarts
                        idle_after_end += 1
                        if idle_after_end > 2:  # drained what the ended agent wrote
                            return
                    else:
                        idle_after_end = 0
                    await anyio.sleep(0.1)
            finally:
                follower.close()

        return Response(200, stream=follow(), content_type="text/plain; charset=utf-8")

    async def events(req: Request) -> Response:
        agent_id = sup.find(req.query["agent"]).record.id if req.query.get("agent") else None
        since = int(req.number("since", 0, 0, 2**62))
        limit = int(req.number("limit", 100, 1, 10_000))
        if not req.flag("follow"):
            found = await event_store.query(ctx.db, agent_id=agent_id, since=since, limit=limit)
            return json_response(EventList(events=found))

        async def follow() -> AsyncIterator[bytes]:
            async with ctx.bus.subscribe() as live:
                backlog = await event_store.query(
                    ctx.db, agent_id=agent_id, since=since, limit=limit
                )
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

        return Response(200, stream=follow(), content_type="application/x-ndjson")

    async def usage(req: Request) -> Response:
        by = req.query.get("by", "agent")
        if by not in ("agent", "provider", "model"):
            raise InvalidRequest("`by` must be one of agent, provider, model", field="by")
        agent_id = sup.find(req.query["agent"]).record.id if req.query.get("agent") else None
        return json_response(await trace_store.usage(ctx.db, by, agent_id))

    async def traces(req: Request) -> Response:
        agent_id = sup.find(req.query["agent"]).record.id if req.query.get("agent") else None
        limit = int(req.number("limit", 50, 1, 10_000))
        return json_response(
            TraceList(traces=await trace_store.query(ctx.db, agent_id=agent_id, limit=limit))
        )

    async def limits(req: Request) -> Response:
        return json_response(LimitsList(limits=[s.info() for s in sup.all_scopes()]))

    async def get_limits(req: Request) -> Response:
        return json_response(sup.resolve_scope(req.params["scope"]).info())

    async def put_limits(req: Request) -> Response:
        body = await req.json(LimitsUpdate)
        scope = sup.resolve_scope(req.params["scope"])
        return json_response((await sup.set_limits(scope, body.given())).info())

    async def delete_limits(req: Request) -> Response:
        scope = sup.resolve_scope(req.params["scope"])
        cleared: dict[str, object] = {name: None for name in LIMIT_FIELDS}
        return json_response((await sup.set_limits(scope, cleared)).info())

    async def shutdown(req: Request) -> Response:
        keep = req.flag("keep_agents")
        ctx.request_shutdown(keep)
        return json_response({"stopping": True, "keep_agents": keep}, 202)

    r.add(
        "GET",
        "/v1/health",
        health,
        "Daemon health, version, router address, agent counts",
        response=Health,
    )
    r.add("GET", "/v1/version", version, "Daemon and protocol version", response=Version)
    r.add("GET", "/v1/openapi.json", openapi, "This description")
    r.add(
        "GET",
        "/v1/agents",
        list_agents,
        "List agents (metrics: with each one's metrics)",
        response=AgentList,
        query=("metrics",),
    )
    r.add("POST", "/v1/agents", start_agent, "Start an agent", body=StartRequest, response=Agent)
    r.add(
        "GET",
        "/v1/agents/{ref}",
        get_agent,
        "Get an agent by id, id prefix or name",
        response=Agent,
    )
    r.add(
        "PATCH",
        "/v1/agents/{ref}",
        update_agent,
        "Change budget, PII mode or rate limits of an agent",
        body=UpdateRequest,
        response=Agent,
    )
    r.add(
        "DELETE",
        "/v1/agents/{ref}",
        remove_agent,
        "Remove an ended agent (force: stop it first)",
        response=Agent,
        query=("force", "timeout"),
    )
    r.add(
        "POST",
        "/v1/agents/{ref}/stop",
        stop_agent,
        "Stop: SIGTERM to the tree, grace, SIGKILL",
        body=StopRequest,
        response=Agent,
    )
    r.add(
        "POST",
        "/v1/agents/{ref}/restart",
        restart_agent,
        "Restart an agent",
        body=StopRequest,
        response=Agent,
    )
    r.add(
        "GET",
        "/v1/agents/{ref}/wait",
        wait_agent,
        "Wait until the agent has ended (long poll)",
        response=Agent,
        query=("timeout",),
    )
    r.add(
        "GET",
        "/v1/agents/{ref}/metrics",
        agent_metrics,
        "CPU, memory, uptime, LLM usage and spend",
        response=Metrics,
    )
    r.add(
        "GET",
        "/v1/agents/{ref}/logs",
        agent_logs,
        "The agent's stdout/stderr (follow: stream)",
        query=("tail", "follow"),
    )
    r.add(
        "GET",
        "/v1/events",
        events,
        "Events, oldest first (follow: NDJSON stream)",
        response=EventList,
        query=("agent", "since", "limit", "follow"),
    )
    r.add(
        "GET",
        "/v1/usage",
        usage,
        "Spend and tokens grouped by agent, provider or model",
        response=Usage,
        query=("by", "agent"),
    )
    r.add(
        "GET",
        "/v1/traces",
        traces,
        "One row per LLM call, newest last",
        response=TraceList,
        query=("agent", "limit"),
    )
    r.add(
        "GET",
        "/v1/limits",
        limits,
        "Every budget scope (global, project:NAME, agent:ID): limits, spend, holds",
        response=LimitsList,
    )
    r.add(
        "GET",
        "/v1/limits/{scope}",
        get_limits,
        "One scope: global, project:NAME, agent:REF or an agent ref",
        response=ScopeLimits,
    )
    r.add(
        "PUT",
        "/v1/limits/{scope}",
        put_limits,
        "Set limits of a scope (absent: unchanged, null: cleared); applied live",
        body=LimitsUpdate,
        response=ScopeLimits,
    )
    r.add(
        "DELETE",
        "/v1/limits/{scope}",
        delete_limits,
        "Remove every limit of a scope (its spend is kept)",
        response=ScopeLimits,
    )
    r.add(
        "POST",
        "/v1/daemon/stop",
        shutdown,
        "Stop the daemon (keep_agents: leave agents running)",
        query=("keep_agents",),
    )
    return r
