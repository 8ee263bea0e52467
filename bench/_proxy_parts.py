"""The plumbing both floor proxies share (floor.py's raw proxy, _governed_floor.py):
per client connection one upstream connection, opened as the client connects, and a
request written as soon as it is (held until the upstream connection is open). And the
bare proxy's ASGI app (floor.py, instructions.py): `ironrt.wire` with nothing on top."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast


def run_on_daemon_loop(main: Coroutine[Any, Any, None]) -> str:
    """Run `main` on the event loop the daemon would choose (`ironrt.daemon.event_loop`:
    uvloop where it imports), so that a floor is measured on the router's own loop; the
    loop's name once `main` ends."""
    from ironrt.daemon import event_loop

    name, options, _ = event_loop(None)
    with asyncio.Runner(loop_factory=options.get("loop_factory")) as runner:
        runner.run(main)
    return name


class UpstreamSide(asyncio.Protocol):
    """The proxy's connection to the upstream; a subclass parses what comes back."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not `asyncio.Transport` subclasses: the same interface.
        self.transport = cast(asyncio.Transport, transport)


class ClientSide(asyncio.Protocol):
    """A client's connection to the proxy; a subclass parses the requests and calls
    `forward`. `upstream()` makes the protocol of this client's upstream connection."""

    up_port = 0

    def __init__(self) -> None:
        self.up: UpstreamSide | None = None
        self.pending: bytes | None = None

    def upstream(self) -> UpstreamSide:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        self.connecting = loop.create_task(self._connect(loop))

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        _, up = await loop.create_connection(self.upstream, "127.0.0.1", self.up_port)
        self.up = up
        if self.pending is not None:
            assert up.transport is not None
            up.transport.write(self.pending)
            self.pending = None

    def forward(self, data: bytes) -> None:
        if self.up is None or self.up.transport is None:
            self.pending = data
        else:
            self.up.transport.write(data)


def serve(sock: socket.socket, client: Any, *background: Any) -> None:
    """Serve `client` connections on `sock` until killed; `background` coroutine
    functions run alongside."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(client, sock=sock)
        tasks = [loop.create_task(fn()) for fn in background]
        try:
            await server.serve_forever()
        finally:
            for task in tasks:
                task.cancel()

    run_on_daemon_loop(run())


class WholeMessages(asyncio.Protocol):
    """A connection whose messages (requests or answers, by `parser`) are wanted whole:
    each one's body is handed to `message` once complete."""

    parser: Any

    def __init__(self) -> None:
        self.body: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        data, self.body = b"".join(self.body), []
        self.message(data)

    def message(self, body: bytes) -> None:
        raise NotImplementedError


class Forwarding:
    """An app for `ironrt.wire`'s server, served as the router is (its direct interface,
    `serve_wire`: no ASGI messages): each request's whole body goes to `forward`, whose
    status and body go back whole, as JSON."""

    def __init__(self, forward: Callable[[bytes, bytes], Awaitable[tuple[int, bytes]]]) -> None:
        self.forward = forward

    async def serve_wire(self, cycle: Any) -> None:
        body = await cycle.read_body(1 << 24)
        status, data = await self.forward(cycle.raw_path, body)
        await cycle.answer(status, [(b"content-type", b"application/json")], data)


def bare_app(pool: Any, upstream: str, key: str) -> Forwarding:
    """An app forwarding each request as it came to `upstream` through `pool` (an
    `ironrt.wire.pool.Pool`) and relaying the answer whole: no auth, no parsing of the
    body, no policy, no record."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    base = upstream.encode()

    async def forward(path: bytes, body: bytes) -> tuple[int, bytes]:
        response = await pool.request("POST", (base + path).decode(), headers, body)
        return response.status, await response.read()

    return Forwarding(forward)
