"""Serving an ASGI app with uvicorn inside the daemon's own anyio task group.

uvicorn does the HTTP; we keep control of the process: its signal capture is switched off
(the daemon handles SIGTERM itself and decides what to do with the agents), it logs
nothing of its own, and it serves sockets the daemon bound and secured beforehand.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_FORBIDDEN = b'{"error":{"code":"forbidden","message":"this daemon only answers its own user"}}'


class _QuietServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class PeerCheckedProtocol(HttpToolsProtocol):
    """Refuses connections from other users (SO_PEERCRED), on top of the 0600 socket mode."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            return
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid not in (os.getuid(), 0):
            head = (
                b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: "
                + str(len(_FORBIDDEN)).encode()
                + b"\r\n\r\n"
            )
            transport.write(head + _FORBIDDEN)
            transport.close()


def make_server(app: Any, *, unix: bool, graceful: int = 3) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        http=PeerCheckedProtocol if unix else "httptools",
        loop="none",
        lifespan="off",
        interface="asgi3",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=graceful,
        timeout_keep_alive=30,
        limit_concurrency=4096,
        backlog=2048,
    )
    return _QuietServer(config)


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
