"""Handlers of the calls on budget scopes (`global`, `project:NAME`, `agent:REF`): list,
get, set and remove their limits. The spend of a scope is kept whatever its limits do."""

from __future__ import annotations

from ironrt.control.context import DaemonContext
from ironrt.control.http import Request, Response, json_response
from ironrt.protocol import LIMIT_FIELDS, LimitsList, LimitsUpdate


async def list_limits(req: Request, ctx: DaemonContext) -> Response:
    return json_response(LimitsList(limits=[s.info() for s in ctx.supervisor.all_scopes()]))


async def get_limits(req: Request, ctx: DaemonContext) -> Response:
    return json_response(ctx.supervisor.resolve_scope(req.params["scope"]).info())


async def set_limits(req: Request, ctx: DaemonContext) -> Response:
    body = await req.json(LimitsUpdate)
    sup = ctx.supervisor
    text = req.params["scope"]
    if isinstance(body.pii_types, dict) and (text == "global" or text.startswith("project:")):
        sup.check_pii(body.pii_types, None)  # before the scope exists: a refusal leaves none
    scope = sup.resolve_scope(text)
    return json_response((await sup.set_limits(scope, body.given())).info())


async def remove_limits(req: Request, ctx: DaemonContext) -> Response:
    sup = ctx.supervisor
    scope = sup.resolve_scope(req.params["scope"])
    cleared: dict[str, object] = {name: None for name in LIMIT_FIELDS}
    return json_response((await sup.set_limits(scope, cleared)).info())
