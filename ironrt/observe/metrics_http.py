"""`/metrics` over TCP, on `IRONRT_METRICS_ADDR` (off unless set): what Prometheus scrapes.

The control socket serves `/metrics` too (`GET /metrics`, `ironrt/control/metrics.py`), but
only to the daemon's own user; a Prometheus server needs a TCP port. This app serves that
one path and nothing else: no control call is ever reachable over TCP. It runs on the
daemon's own HTTP server (`ironrt.server`), in the daemon's task group.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from ironrt.config import ConfigError
from ironrt.observe.metrics import CONTENT_TYPE, Metrics
from ironrt.server import bind_tcp

__all__ = ["bind_metrics", "is_loopback", "metrics_app"]

log = logging.getLogger("ironrt.metrics")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def metrics_app(metrics: Metrics) -> App:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        if scope["path"] != "/metrics":
            await _answer(send, 404, b"not found: only /metrics is served here\n")
        elif method not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed: GET /metrics\n", [(b"allow", b"GET")])
        else:
            body = metrics.exposition()
            await _answer(send, 200, b"" if method == "HEAD" else body, content=CONTENT_TYPE)

    return app


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content: str = "text/plain; charset=utf-8",
) -> None:
    head = [
        (b"content-type", content.encode()),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_metrics(host: str, port: int) -> socket.socket:
    """The metrics port's listening socket, or a one-line `ConfigError` saying why not."""
    try:
        sock = bind_tcp(host, port)
    except OSError as exc:
        why = f"cannot listen on {host}:{port} for metrics ({exc.strerror or exc})"
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            fix = "choose a free port, or unset it to serve /metrics on the control socket only"
        else:
            fix = "check the host"
        raise ConfigError(f"{why}: IRONRT_METRICS_ADDR is {_addr(host, port)}; {fix}") from None
    if not is_loopback(host):
        log.warning(
            "metrics served beyond this host on %s: agent names, projects and spend are "
            "readable by anyone who can reach it",
            _addr(host, port),
        )
    return sock


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
