"""The daemon's HTTP/1.1 server: asyncio protocols with httptools parsing, serving an
app on sockets the daemon bound and secured beforehand: the router through its direct
interface (`app.serve_wire(cycle)`, see cycle.py), any other app as ASGI 3.

Why not uvicorn: on the router's hot path its ASGI layers (a request/response cycle
object, proxy-header middleware, flow-control objects, a date header refreshed by a
ticking task) were a large part of the CPU per call (issue 14). This server keeps the
ASGI interface (`await app(scope, receive, send)`) for the apps that have no other, and the
attributes the daemon uses of `uvicorn.Server`: `serve(sockets)`, `started`,
`should_exit` and `timeout_graceful_shutdown`.

On exit it stops accepting, closes idle connections, lets answers in flight finish for up
to the graceful timeout, then cancels what is left and closes every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from typing import Any

from ironrt.wire.asgi import run_asgi
from ironrt.wire.connection import HttpConnection
from ironrt.wire.cycle import Handler
from ironrt.wire.guard import ConnectionLimits, Guard

__all__ = ["Server"]

log = logging.getLogger("ironrt.wire")


class Server:
    """One listening server (see the module docstring)."""

    def __init__(
        self,
        app: Any,
        limits: ConnectionLimits | None = None,
        *,
        graceful: float = 3.0,
        backlog: int = 2048,
    ) -> None:
        self.app = app
        #: What runs each request: the app's direct interface if it has one, else ASGI.
        self.handler: Handler = getattr(app, "serve_wire", None) or functools.partial(run_asgi, app)
        self.guard = Guard(limits or ConnectionLimits())
        self.timeout_graceful_shutdown = graceful
        self.backlog = backlog
        self.started = False
        self.connections: set[HttpConnection] = set()
        #: The answers in flight (`Cycle.run` takes its task out as it ends).
        self.tasks: set[asyncio.Task[None]] = set()
        self._should_exit = False
        self._exit: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """Settable from any thread, as `uvicorn.Server.should_exit` is."""
        self._should_exit = value
        loop, event = self._loop, self._exit
        if value and loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop just stopped
                loop.call_soon_threadsafe(event.set)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve `sockets` until `should_exit` (or cancellation), then shut down."""
        loop = self._loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        listeners: list[asyncio.Server] = []
        try:
            for sock in sockets or []:
                listeners.append(
                    await loop.create_server(
                        lambda: HttpConnection(self), sock=sock, backlog=self.backlog
                    )
                )
            self.started = True
            if not self._should_exit:
                await self._exit.wait()
            self._stop_accepting(listeners, sockets)
            await self._drain()
        finally:
            self._stop_accepting(listeners, sockets)
            self._cut()

    @staticmethod
    def _stop_accepting(
        listeners: list[asyncio.Server], sockets: list[socket.socket] | None
    ) -> None:
        for listener in listeners:
            listener.close()
        for sock in sockets or []:
            sock.close()

    async def _drain(self) -> None:
        """Idle connections close now; answers in flight get the graceful timeout."""
        for conn in list(self.connections):
            conn.shutdown()
        try:
            async with asyncio.timeout(self.timeout_graceful_shutdown):
                while self.connections or self.tasks:
                    await asyncio.sleep(0.02)
        except TimeoutError:
            log.warning("wire: cancelling %d answers still running at shutdown", len(self.tasks))

    def _cut(self) -> None:
        """Whatever is left (after the graceful timeout, or on cancellation) ends now."""
        for task in list(self.tasks):
            task.cancel()
        for conn in list(self.connections):
            conn.transport.close()
