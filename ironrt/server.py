"""The daemon's servers (control socket, router, metrics) and the sockets they serve.

HTTP is served by `ironrt.wire.server` (asyncio protocols, httptools parsing) inside the
daemon's own anyio task group, on sockets the daemon bound and secured beforehand; it
captures no signal (the daemon handles SIGTERM itself and decides what to do with the
agents) and logs only errors of the apps it serves.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import TYPE_CHECKING, Any

from ironrt.connections import ConnectionLimits
from ironrt.supervisor import rlimits
from ironrt.wire.server import Server

if TYPE_CHECKING:
    from ironrt.config import Settings

__all__ = [
    "CONTROL_LIMITS",
    "GuardedServer",
    "Server",
    "bind_tcp",
    "bind_unix",
    "limits_from",
    "make_server",
]

#: The name this server had when it was uvicorn's: a server whose connections are guarded.
GuardedServer = Server


def make_server(
    app: Any, *, unix: bool, limits: ConnectionLimits | None = None, graceful: int = 3
) -> Server:
    """A server for the control API (`unix`: only its own user may connect) or the router."""
    limits = limits or (CONTROL_LIMITS if unix else ConnectionLimits())
    return Server(app, limits, graceful=graceful, backlog=2048)


#: The control socket: one user's CLI, clients and followers (`logs -f`, `events -f`).
CONTROL_LIMITS = ConnectionLimits(max_total=512, max_per_peer=512, own_user_only=True)
#: Descriptors kept for everything but router connections: the database, agents' pipes,
#: the control socket's connections, upstream connections (one per call in flight).
_RESERVED_FILES = 1024


def limits_from(settings: Settings) -> tuple[ConnectionLimits, ConnectionLimits]:
    """The control socket's and the router's limits. The router's total is capped so that
    a flood of connections meets the cap, not the open-files limit (EMFILE would refuse
    every new connection, agents' included, without the eviction that keeps them served)."""
    files = rlimits.raise_own_nofile()
    total = max(
        16, min(settings.max_connections, files - _RESERVED_FILES - CONTROL_LIMITS.max_total)
    )
    timing = ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        keepalive_timeout=settings.keepalive_timeout,
    )
    control = dataclasses.replace(
        timing,
        max_total=CONTROL_LIMITS.max_total,
        max_per_peer=CONTROL_LIMITS.max_per_peer,
        own_user_only=True,
    )
    router = dataclasses.replace(
        timing, max_total=total, max_per_peer=min(settings.max_connections_per_peer, total)
    )
    return control, router


def bind_unix(path: str) -> socket.socket:
    """Bind the control socket with 0600 from the first instant (umask), not chmod after."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(512)
    sock.setblocking(False)
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets it knows are TCP; without it a
    # response written as headers + body waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock
