"""The small ASGI toolkit the control API is built from: request, responses, routing.

HTTP parsing is uvicorn's; this module only routes by method and path, reads bodies with a
hard size cap (a 10 MB body is refused with 413 as soon as the cap is crossed, not after
it was buffered), decodes them into the protocol's Structs, and turns every IronrtError
into the documented JSON error body. No handler can crash the connection: anything
unexpected becomes a 500 with a generic message (and a traceback in the daemon log).
"""

from __future__ import annotations

import errno
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs

import anyio
import msgspec

from ironrt.calls import Operation, Query
from ironrt.errors import (
    DaemonError,
    InvalidRequest,
    InvalidValue,
    IronrtError,
    PayloadTooLarge,
    StorageError,
)
from ironrt.protocol import MAX_BODY_BYTES, ErrorBody, ErrorResponse
from ironrt.suggest import closest

log = logging.getLogger("ironrt.control")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")


@dataclass(slots=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    receive: Receive
    #: The call of `ironrt.calls` this request was routed to: its query parameters'
    #: types, defaults and ranges are the ones the accessors below apply.
    call: Operation[Any] | None = None
    #: The request's headers, by lower-case name (the last one of a repeated name).
    headers: dict[str, str] = field(default_factory=dict)
    #: Every value of each query parameter, in order (`query` keeps the last one).
    query_all: dict[str, list[str]] = field(default_factory=dict)

    async def body(self, limit: int = MAX_BODY_BYTES) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise InvalidRequest("the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def json(self, type_: type[T]) -> T:
        raw = await self.body()
        if not raw.strip():
            raw = b"{}"
        try:
            return msgspec.json.decode(raw, type=type_)
        except msgspec.ValidationError as exc:
            # A check of the request's own (`__post_init__`, a ValueError) or a number
            # beyond what JSON numbers hold: the type was right, the value is not (422).
            ranged = isinstance(exc.__cause__, ValueError) or _OUT_OF_RANGE.search(str(exc))
            cls = InvalidValue if ranged else InvalidRequest
            raise cls(f"invalid request body: {exc}", field=_field_of(exc)) from exc
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"malformed JSON: {exc}") from exc

    # ---- query parameters, as the call declares them -------------------------------------
    def _declared(self, name: str, type_: str) -> Query:
        """The declaration of `name`: a handler reads only what its call declares (a
        parameter missing from the table is a bug, not a client's error)."""
        if self.call is None:
            raise LookupError(f"{self.method} {self.path} was not routed to a call")
        declared = self.call.param(name)
        if declared.type != type_:
            raise TypeError(f"query parameter {name!r} is a {declared.type}, not a {type_}")
        return declared

    def flag(self, name: str) -> bool:
        self._declared(name, "flag")
        value = self.query.get(name, "").lower()
        if value in ("", "0", "false", "no"):
            return False
        if value in ("1", "true", "yes"):
            return True
        raise InvalidRequest(f"query parameter `{name}` must be true or false", field=name)

    def number(self, name: str) -> float:
        declared = self._declared(name, "number")
        raw = self.query.get(name)
        if raw is None:
            return float(cast(float, declared.default))
        try:
            value = float(raw)
        except ValueError:
            raise InvalidRequest(f"query parameter `{name}` must be a number", field=name) from None
        lo, hi = cast(float, declared.minimum), cast(float, declared.maximum)
        if not lo <= value <= hi:
            raise InvalidValue(
                f"query parameter `{name}` must be between {lo:g} and {hi:g}", field=name
            )
        return value

    def choice(self, name: str) -> str:
        declared = self._declared(name, "choice")
        value = self.query.get(name, cast(str, declared.default))
        if value not in declared.choices:
            allowed = ", ".join(declared.choices)
            raise InvalidRequest(f"`{name}` must be one of {allowed}", field=name)
        return value

    def text(self, name: str) -> str | None:
        """The parameter's value; None when absent or empty."""
        self._declared(name, "text")
        return self.query.get(name) or None

    def texts(self, name: str) -> list[str]:
        """Every value of a repeatable text parameter, a comma list counting as many."""
        self._declared(name, "text")
        return [v for raw in self.query_all.get(name, ()) for v in raw.split(",") if v]


#: msgspec's words for a value outside its `Meta` range, or beyond what a number holds.
_OUT_OF_RANGE = re.compile(r"Expected `[^`]+` (of length )?[<>]=?|out of range")


def _field_of(exc: msgspec.ValidationError) -> str | None:
    match = re.search(r"at `\$\.([A-Za-z_0-9]+)", str(exc))
    if match:
        return match.group(1)
    match = re.search(r"unknown field `([^`]+)`", str(exc))
    if match:
        return match.group(1)
    match = re.search(r"missing required field `([^`]+)`", str(exc))
    if match:
        return match.group(1)
    # A check of the request's own (`__post_init__`) names its field first, in backticks.
    match = re.match(r"`([A-Za-z_][A-Za-z_0-9]*)`", str(exc))
    return match.group(1) if match else None


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    stream: AsyncIterator[bytes] | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def __call__(self, send: Send, receive: Receive | None = None) -> None:
        headers = [(b"content-type", self.content_type.encode()), *self.headers]
        if self.stream is None:
            headers.append((b"content-length", str(len(self.body)).encode()))
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": self.body})
            return
        headers.append((b"cache-control", b"no-cache"))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        stream = self.stream

        async def pump() -> None:
            try:
                async for chunk in stream:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            except OSError:
                pass  # the client went away mid-stream
            tg.cancel_scope.cancel()

        async def watch_disconnect() -> None:
            # A follower (logs -f, events -f) ends when its client hangs up, not later.
            while receive is not None:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
            else:
                await anyio.sleep_forever()
            tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump)
                tg.start_soon(watch_disconnect)
        finally:
            # Closed now, not whenever it is collected: a follower leaves the bus at once.
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, msgspec.json.encode(value))


def error_response(exc: IronrtError) -> Response:
    body = ErrorResponse(ErrorBody(code=exc.code, message=exc.message, field=exc.field))
    return json_response(body, exc.status)


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(slots=True)
class Route:
    call: Operation[Any]
    pattern: re.Pattern[str]
    handler: Handler

    @property
    def method(self) -> str:
        return self.call.method

    @property
    def template(self) -> str:
        return self.call.path


class Router:
    """Routes by method and path to the handler bound to each call of the table."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, call: Operation[Any], handler: Handler) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", call.path) + "$"
        self.routes.append(Route(call, re.compile(regex), handler))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route in self.routes:
            found = route.pattern.match(path)
            if found:
                if route.method == method:
                    return route, found.groupdict()
                allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(
                f"{method} is not allowed on {path} (allowed: {', '.join(allowed)})"
            )
        raise NotFound(f"no such resource: {method} {path}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        try:
            route, params = self.match(method, path)
            query_all = parse_qs(scope.get("query_string", b"").decode())
            _refuse_unknown_query(route.call, query_all)
            query = {k: v[-1] for k, v in query_all.items()}
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
            response = await route.handler(
                Request(method, path, params, query, receive, route.call, headers, query_all)
            )
        except IronrtError as exc:
            response = error_response(exc)
        except (sqlite3.Error, OSError) as exc:
            if not is_storage_error(exc):
                response = _internal(method, path)
            else:
                log.error("state write failed on %s %s: %s", method, path, exc)
                response = error_response(
                    StorageError(
                        f"the daemon cannot write its state ({exc}); is the disk full? "
                        "Nothing was changed"
                    )
                )
        except Exception:
            response = _internal(method, path)
        await response(send, receive)


def _refuse_unknown_query(call: Operation[Any], query: dict[str, list[str]]) -> None:
    """400 naming a query parameter the call does not take: ignored, a typo
    (`/v1/events?agnet=x`) answered as if it were absent (every event, unfiltered)."""
    known = [q.name for q in call.query]
    for name in query:
        if name not in known:
            close = closest(name, known)
            hint = f" (did you mean `{close}`?)" if close else ""
            takes = ", ".join(f"`{k}`" for k in known) or "none"
            raise InvalidRequest(
                f"unknown query parameter `{name}`{hint}; this call takes: {takes}", field=name
            )


#: What a full, read-only, over-quota or failing disk says through the OS.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def is_storage_error(exc: BaseException) -> bool:
    """SQLite's errors (full, locked, read-only, I/O) and the OS's disk errors: the daemon
    could not keep its state, which is a 507, not a bug."""
    if isinstance(exc, sqlite3.Error):
        return True
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS


def _internal(method: str, path: str) -> Response:
    """A bug: the traceback goes to daemon.log, the client gets the documented 500, and
    the daemon (its other agents) carries on."""
    log.exception("control API handler failed on %s %s", method, path)
    return error_response(DaemonError("internal error in the daemon; see daemon.log"))


class NotFound(IronrtError):
    code = "not_found"
    status = 404


class MethodNotAllowed(IronrtError):
    code = "method_not_allowed"
    status = 405
