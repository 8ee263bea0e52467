"""The control API: every call of `ironrt.calls` bound to its handler.

The calls (method, path, body, query, answer, status) are declared once in
`ironrt.calls`; the handlers are module-level functions grouped by resource (`agents`,
`limits`, `observe`, `daemon_calls`). `build` only binds the two, and refuses a call
without a handler or a handler without a call, so the routes served, the clients'
requests and `/v1/openapi.json` all come from the same table.
"""

from __future__ import annotations

from ironrt import calls
from ironrt.control import agents, daemon_calls, limits, metrics, observe, traces, usage
from ironrt.control.context import CallHandler
from ironrt.control.context import DaemonContext as DaemonContext  # re-exported
from ironrt.control.http import Handler, Request, Response, Router

#: The handler of each call, by the call's name.
HANDLERS: dict[str, CallHandler] = {
    calls.HEALTH.name: daemon_calls.health,
    calls.VERSION.name: daemon_calls.version,
    calls.OPENAPI.name: daemon_calls.openapi,
    calls.METRICS.name: metrics.metrics,
    calls.STOP_DAEMON.name: daemon_calls.stop_daemon,
    calls.LIST_AGENTS.name: agents.list_agents,
    calls.START_AGENT.name: agents.start_agent,
    calls.GET_AGENT.name: agents.get_agent,
    calls.UPDATE_AGENT.name: agents.update_agent,
    calls.REMOVE_AGENT.name: agents.remove_agent,
    calls.STOP_AGENT.name: agents.stop_agent,
    calls.RESTART_AGENT.name: agents.restart_agent,
    calls.WAIT_AGENT.name: agents.wait_agent,
    calls.AGENT_METRICS.name: agents.agent_metrics,
    calls.AGENT_LOGS.name: agents.agent_logs,
    calls.EVENTS.name: observe.events,
    calls.USAGE.name: usage.usage,
    calls.TRACES.name: traces.traces,
    calls.GET_TRACE.name: traces.get_trace,
    calls.LIST_LIMITS.name: limits.list_limits,
    calls.GET_LIMITS.name: limits.get_limits,
    calls.SET_LIMITS.name: limits.set_limits,
    calls.REMOVE_LIMITS.name: limits.remove_limits,
}


def build(ctx: DaemonContext) -> Router:
    """The router of the running daemon: each call of the table, in the table's order."""
    names = [c.name for c in calls.CALLS]
    unbound = [n for n in names if n not in HANDLERS]
    stray = [n for n in HANDLERS if n not in names]
    if unbound or stray:
        raise LookupError(f"calls without a handler: {unbound}; handlers without a call: {stray}")
    router = Router()
    for call in calls.CALLS:
        router.add(call, _bind(HANDLERS[call.name], ctx))
    return router


def _bind(handler: CallHandler, ctx: DaemonContext) -> Handler:
    async def bound(req: Request) -> Response:
        return await handler(req, ctx)

    return bound
