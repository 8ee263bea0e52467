"""Handlers of the calls about the daemon itself: health, version, this API's description,
and stopping it."""

from __future__ import annotations

import functools
import os
import time

from ironrt._version import __version__
from ironrt.calls import CALLS, STOP_DAEMON, DaemonStopping
from ironrt.control.context import DaemonContext
from ironrt.control.http import Request, Response, json_response
from ironrt.control.openapi import openapi_document
from ironrt.protocol import PROTOCOL_VERSION, Health, Version


async def health(req: Request, ctx: DaemonContext) -> Response:
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
            agents=ctx.supervisor.counts(),
            provider_keys=ctx.provider_keys(),
            circuits=ctx.circuits(),
            telemetry=ctx.telemetry(),
            ledger=ctx.ledger(),
        )
    )


async def version(req: Request, ctx: DaemonContext) -> Response:
    return json_response(Version(version=__version__, protocol=PROTOCOL_VERSION))


@functools.cache
def _document() -> bytes:
    """The table does not change while the daemon runs: generated once."""
    return openapi_document(CALLS, __version__)


async def openapi(req: Request, ctx: DaemonContext) -> Response:
    return Response(200, _document())


async def stop_daemon(req: Request, ctx: DaemonContext) -> Response:
    keep = req.flag("keep_agents")
    ctx.request_shutdown(keep)
    return json_response(DaemonStopping(stopping=True, keep_agents=keep), STOP_DAEMON.status)
