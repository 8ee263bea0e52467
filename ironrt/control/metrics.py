"""`GET /metrics` on the control socket: the daemon's Prometheus metrics, as text.

The same exposition `IRONRT_METRICS_ADDR` serves over TCP (`ironrt.observe.metrics_http`),
here for the daemon's own user only: `curl --unix-socket` and tools on the same host read
it without opening a port.
"""

from __future__ import annotations

from ironrt.control.context import DaemonContext
from ironrt.control.http import Request, Response
from ironrt.errors import DaemonError
from ironrt.observe.metrics import CONTENT_TYPE


async def metrics(req: Request, ctx: DaemonContext) -> Response:
    _ = req
    if ctx.metrics is None:  # a context built without them (never the running daemon's)
        raise DaemonError("metrics are not set up in this daemon")
    return Response(200, ctx.metrics.exposition(), CONTENT_TYPE)
