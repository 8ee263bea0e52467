"""One request's exchange with the agent, as the router's ASGI app sees it: reading the
body under its cap, the headers, and the answer as it goes out (whether it started, so
the failure guard knows if a provider-shaped 500 can still be sent)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ironrt.governance.flow import Flow
from ironrt.providers import ProviderAdapter
from ironrt.providers.base import LowerHeaders

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Bodies above this are refused with 413 while being read (images in base64 fit well below).
MAX_BODY_BYTES = 16 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


def innermost(exc: BaseException) -> BaseException:
    """The one error inside (nested) groups of one, as a task group raises it."""
    inner = getattr(exc, "exceptions", None)
    while isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc


class Exchange:
    """One request's answer as it goes out: whether it started and ended, and what the
    failure guard needs to answer or record (the adapter shaping errors, the flow)."""

    __slots__ = ("_send", "adapter", "finished", "flow", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.finished = False
        self.adapter: ProviderAdapter | None = None
        self.flow: Flow | None = None

    async def __call__(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self._send(message)


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def request_headers(scope: Scope) -> LowerHeaders:
    """The request's headers as text. Their names are lower-case already: ASGI says so,
    and the daemon's server (`ironrt.wire`) and library mode's scopes both do it."""
    return LowerHeaders({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
