"""One request's exchange with the agent, as the router sees it: the request (method, raw
path, query, headers), its body read under its cap, and its answer as it goes out
(whether it started, so the failure guard knows if a provider-shaped 500 can still be
sent).

Two kinds, one interface: the daemon's server hands the router its exchange directly
(`WireExchange` over `ironrt.wire`'s `Cycle`: no ASGI messages on the hot path), library
mode and any other ASGI server through `AsgiExchange`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ironrt.governance.flow import Flow
from ironrt.providers import ProviderAdapter
from ironrt.providers.base import LowerHeaders
from ironrt.router.paths import raw_target
from ironrt.wire.cycle import BodyTooLarge, ClientGone, Cycle

__all__ = [
    "MAX_BODY_BYTES",
    "AsgiExchange",
    "BodyTooLarge",
    "ClientGone",
    "Exchange",
    "Headers",
    "Receive",
    "Scope",
    "Send",
    "WireExchange",
    "innermost",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

#: Bodies above this are refused with 413 while being read (images in base64 fit well below).
MAX_BODY_BYTES = 16 * 1024 * 1024


def innermost(exc: BaseException) -> BaseException:
    """The one error inside (nested) groups of one, as a task group raises it."""
    inner = getattr(exc, "exceptions", None)
    while isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc


class Exchange:
    """One request and its answer (see the module docstring). `headers` reads the request's
    headers as text (`LowerHeaders`: decoded when read), `raw_headers` holds them as they
    came; names are lower case in both (ASGI says so, and `ironrt.wire` does it)."""

    __slots__ = (
        "adapter",
        "finished",
        "flow",
        "headers",
        "method",
        "query",
        "raw_headers",
        "raw_path",
        "started",
    )

    def __init__(self, method: str, raw_path: bytes, query: bytes, raw_headers: Headers) -> None:
        self.method = method
        #: The target's path as sent, without its query (`paths.py` decides on it).
        self.raw_path = raw_path
        self.query = query
        #: The headers as they came (names lower case): forwarded as these bytes.
        self.raw_headers = raw_headers
        self.headers = LowerHeaders(raw_headers)
        self.started = False
        self.finished = False
        self.adapter: ProviderAdapter | None = None
        self.flow: Flow | None = None

    async def read_body(self) -> bytes:
        """The whole body: `BodyTooLarge` past `MAX_BODY_BYTES`, `ClientGone` if the
        agent left before its end."""
        raise NotImplementedError

    async def start(self, status: int, headers: Headers, fit: bool = False) -> None:
        """The answer's status and headers. `fit`: lower-case names, none with a control
        character (`Answer.headers` are): the daemon's server need not check them again."""
        raise NotImplementedError

    async def write(self, body: bytes, more: bool = False) -> None:
        """A piece of the answer's body; `more=False` ends the answer."""
        raise NotImplementedError

    async def answer(self, status: int, headers: Headers, body: bytes, fit: bool = False) -> None:
        """A whole answer at once (`fit`: see `start`)."""
        await self.start(status, headers, fit)
        await self.write(body)

    async def hung_up(self) -> None:
        """Returns once the agent hangs up (or the answer ended)."""
        raise NotImplementedError


class WireExchange(Exchange):
    """The daemon's server: calls on the connection's `Cycle`."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: Cycle) -> None:
        super().__init__(cycle.method, cycle.raw_path, cycle.query, cycle.headers)
        self._cycle = cycle

    async def read_body(self) -> bytes:
        return await self._cycle.read_body(MAX_BODY_BYTES)

    async def start(self, status: int, headers: Headers, fit: bool = False) -> None:
        self.started = True
        self._cycle.start(status, headers, fit)

    async def write(self, body: bytes, more: bool = False) -> None:
        if not more:
            self.finished = True
        await self._cycle.write(body, more)

    async def answer(self, status: int, headers: Headers, body: bytes, fit: bool = False) -> None:
        self.started = self.finished = True
        cycle = self._cycle
        cycle.start(status, headers, fit)
        await cycle.write(body)

    async def hung_up(self) -> None:
        await self._cycle.wait_gone()


class AsgiExchange(Exchange):
    """Any ASGI 3 server (library mode's kernel): the same calls as messages."""

    __slots__ = ("_receive", "_send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope["headers"]
        if not isinstance(headers, list):
            headers = list(headers)  # ASGI allows any iterable: it is read twice
        super().__init__(
            scope["method"], raw_target(scope), scope.get("query_string", b""), headers
        )
        self._receive = receive
        self._send = send

    async def read_body(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def start(self, status: int, headers: Headers, fit: bool = False) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, body: bytes, more: bool = False) -> None:
        if not more:
            self.finished = True
        await self._send({"type": "http.response.body", "body": body, "more_body": more})

    async def hung_up(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
