"""One request and its answer on a connection.

An app is served in one of two ways. The router calls the exchange directly
(`app.serve_wire(cycle)`): `read_body` hands it the whole body, `start`/`write`/`answer`
frame its answer, `wait_gone` tells it the client left. An ASGI app (the control API,
anything else) gets a scope, `receive` and `send` (asgi.py), thin message wrappers over
the same calls. The direct path exists because on the router's hot path the ASGI
messages (a scope of thirteen entries, a dict per piece of body and answer, the type
dispatch on each) were a measurable share of a call (bench/wire_parts.py).

The answer's head is held until the first piece of body comes (or, for an answer of no
declared length, a stream that waits for its first event, until the loop turns without
one), so a whole answer leaves in ONE `transport.write`: a second write costs a syscall
and, on loopback, a wake-up of the reader. The head is built as one bytes block;
content-length is the app's when it gives one, else the size of a body sent whole, else
chunked framing for a body sent in pieces.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from ironrt.wire.guard import INTERNAL

if TYPE_CHECKING:
    from ironrt.wire.connection import HttpConnection

__all__ = ["BodyTooLarge", "ClientGone", "Cycle", "Handler"]

log = logging.getLogger("ironrt.wire")

#: What a header may not hold (uvicorn's `HEADER_RE`, `HEADER_VALUE_RE`: no control
#: characters, so an app can never split an answer in two).
_BAD_NAME = re.compile(rb'[\x00-\x1f\x7f()<>@,;:\\\[\]={} \t"]')
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase)


_STATUS = {code: _status_line(code) for code in range(100, 600)}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: The answer's headers the server reads (the rest it only writes out).
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})
#: How the body is framed: by content-length, chunked, none (HEAD, 204, 304), or by the
#: connection's end (an HTTP/1.0 client cannot read chunks).
_LENGTH, _CHUNKED, _NONE, _UNTIL_CLOSE = 0, 1, 2, 3


class BodyTooLarge(Exception):
    """The request body passed the reader's limit (the rest is not read)."""


class ClientGone(Exception):
    """The client left before its request body was complete."""


#: What a server calls for each request, on its own task.
Handler = Callable[["Cycle"], Awaitable[None]]


class Cycle:
    """One request/answer exchange on a connection (see the module docstring)."""

    __slots__ = (
        "_event",
        "_framing",
        "_head",
        "_left",
        "_says_close",
        "body",
        "conn",
        "delivered",
        "disconnected",
        "expect_100",
        "head_written",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "more_body",
        "query",
        "raw_path",
        "response_complete",
        "started",
        "task",
    )

    def __init__(
        self,
        conn: HttpConnection,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        http_version: str,
        keep_alive: bool,
        expect_100: bool,
    ) -> None:
        self.conn = conn
        self.method = method
        #: The target's path as sent (percent-encoded), and its query without the `?`.
        self.raw_path = raw_path
        self.query = query
        #: The request's headers, names lower-cased, values as sent.
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        #: Request body received and not yet taken by the app.
        self.body = bytearray()
        self.more_body = True
        #: The last piece of the body (more_body False) was handed out.
        self.delivered = False
        self.disconnected = False
        self.started = False
        self.head_written = False
        self.response_complete = False
        self._event: asyncio.Event | None = None
        self._head = b""
        self._framing = _LENGTH
        self._left = 0
        self._says_close = False
        #: The task running the app (`HttpConnection._start`), in the server's set of
        #: answers in flight until `run` ends.
        self.task: asyncio.Task[None] | None = None

    # -- the parser's side --------------------------------------------------------------

    def wake(self) -> None:
        if self._event is not None:
            self._event.set()

    async def _wait(self) -> None:
        self.conn.taken()
        if self._event is None:
            self._event = asyncio.Event()
        else:
            self._event.clear()
        await self._event.wait()

    # -- running the app -----------------------------------------------------------------

    async def run(self, handler: Handler) -> None:
        try:
            await handler(self)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.error("wire: exception in the app", exc_info=exc)
            self._failed()
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            if not self.response_complete and not self.disconnected:
                log.error("wire: the app returned without completing its answer")
                self._failed()
        finally:
            # Out of the server's set here, not by a done callback: that would be one more
            # callback, and a loop turn of its own, after every answer.
            self.conn.server.tasks.discard(self.task)

    def _failed(self) -> None:
        """The app broke: a 500 if nothing of its answer is on the wire, else a cut."""
        transport = self.conn.transport
        self.keep_alive = False
        if not self.head_written and not self.disconnected and not transport.is_closing():
            self.head_written = True
            transport.write(INTERNAL)
        self.response_complete = True
        transport.close()

    # -- the request body ----------------------------------------------------------------

    def _continue(self) -> None:
        """The app asks for the body: a client that sent `Expect: 100-continue` may send it."""
        self.expect_100 = False
        if self.more_body and not self.head_written and not self.conn.transport.is_closing():
            self.conn.transport.write(_CONTINUE)

    async def read_body(self, limit: int) -> bytes:
        """The whole request body; `BodyTooLarge` once more than `limit` bytes came,
        `ClientGone` if the client left (or the answer ended) before its end."""
        if self.expect_100:
            self._continue()
        chunks: list[bytes] = []
        size = 0
        while not (self.disconnected or self.response_complete):
            if self.body:
                size += len(self.body)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(bytes(self.body))
                self.body.clear()
            if not self.more_body:
                self.delivered = True
                self.conn.taken()
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            await self._wait()
        raise ClientGone

    async def next_body(self) -> tuple[bytes, bool] | None:
        """The body received since the last call and whether more follows (ASGI's
        `http.request`); None once the client left or the answer ended."""
        if self.expect_100:
            self._continue()
        while not (self.disconnected or self.response_complete):
            if self.body or (not self.more_body and not self.delivered):
                chunk = bytes(self.body)
                self.body.clear()
                if not self.more_body:
                    self.delivered = True
                self.conn.taken()
                return chunk, self.more_body
            await self._wait()
        return None

    async def wait_gone(self) -> None:
        """Returns once the client left or the answer ended (the rest of a request's
        body is read and dropped)."""
        while not (self.disconnected or self.response_complete):
            self.body.clear()
            await self._wait()

    # -- the answer ----------------------------------------------------------------------

    async def answer(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes, fit: bool = False
    ) -> None:
        """A whole answer: head and body in one write (`fit`: see `start`)."""
        self.start(status, headers, fit)
        await self.write(body)

    def start(self, status: int, headers: Iterable[tuple[bytes, bytes]], fit: bool = False) -> None:
        """The answer's status and headers (held until the body, see the module docstring).
        `fit`: the caller vouches that every name is lower case and no name or value holds
        a character `_BAD_NAME`/`_BAD_VALUE` refuses (the router's relayed headers went
        through `transports.http.response_headers`); they are not checked again."""
        if self.started:
            raise RuntimeError("the answer was started already")
        self.started = True
        self.expect_100 = False
        parts = [_STATUS.get(status) or _status_line(status)]
        length: int | None = None
        chunked = False
        if not isinstance(headers, (list, tuple)):
            headers = list(headers)  # read three times below
        if not fit:
            # Every name, then every value, checked in one search: the joined bytes hold a
            # bad character exactly when one of the headers does (two searches an answer,
            # not two a header).
            if _BAD_NAME.search(b"".join([name for name, _ in headers])):
                raise RuntimeError("invalid HTTP header name")
            if _BAD_VALUE.search(b"".join([value for _, value in headers])):
                raise RuntimeError("invalid HTTP header value")
            headers = [(name.lower(), value) for name, value in headers]
        for name, value in headers:
            if name in _FRAMING:
                if name == b"content-length":
                    if length is None:
                        length = int(value)
                elif name == b"transfer-encoding":
                    chunked = value.lower() == b"chunked"
                elif b"close" in value.lower():  # connection
                    self.keep_alive = False
                    self._says_close = True
            parts += (name, b": ", value, b"\r\n")
        self._head = b"".join(parts)
        if self.method == "HEAD" or status in (204, 304) or status < 200:
            self._framing = _NONE
        elif length is not None:
            self._framing, self._left = _LENGTH, length
        elif chunked:
            self._framing = _CHUNKED
        else:
            self._framing = -1  # decided by the first piece of body
        if length is None:
            # A stream's first event may be long in coming: its head goes at the next turn
            # (its loop: no lookup, a getpid, a call). An answer of a known length is no
            # use to the client before its body: its head waits for it, and no callback
            # (a loop turn of its own after the answer) is scheduled for it.
            self.conn.loop.call_soon(self._flush_head)

    async def write(self, body: bytes, more: bool = False) -> None:
        """A piece of the answer's body (`more`: not the last). Waits while the client
        reads slower than the answer comes; a client gone takes nothing, silently."""
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected:
            return  # the client left: what it would have read goes nowhere
        if not self.started:
            raise RuntimeError("a body before the answer was started")
        if self.response_complete:
            raise RuntimeError("a body after the answer completed")
        head = b""
        if not self.head_written:
            self.head_written = True
            head = self._finish_head(len(body), more)
        framing = self._framing
        if framing == _CHUNKED:
            out = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more:
                out += b"0\r\n\r\n"
        elif framing == _LENGTH:
            self._left -= len(body)
            if self._left < 0:
                raise RuntimeError("answer longer than its content-length")
            if not more and self._left:
                raise RuntimeError("answer shorter than its content-length")
            out = body
        elif framing == _UNTIL_CLOSE:
            out = body
        else:
            out = b""
        if head or out:
            conn.transport.write(head + out if head else out)
        if not more:
            self.response_complete = True
            self.wake()
            conn.response_done(self)

    def _flush_head(self) -> None:
        if not self.head_written and not self.disconnected:
            self.head_written = True
            self.conn.transport.write(self._finish_head(0, True))

    def _finish_head(self, size: int, more: bool) -> bytes:
        """The held head, with the framing and connection headers the answer needs."""
        extra = b""
        if self._framing == -1:
            if not more:
                self._framing, self._left = _LENGTH, size
                extra = b"content-length: %d\r\n" % size
            elif self.http_version == "1.0":
                self._framing = _UNTIL_CLOSE
                self.keep_alive = False
            else:
                self._framing = _CHUNKED
                extra = b"transfer-encoding: chunked\r\n"
        if not self.keep_alive or self.conn.closing_after:
            self.keep_alive = False
            if not self._says_close:
                extra += b"connection: close\r\n"
        elif self.http_version == "1.0":
            extra += b"connection: keep-alive\r\n"
        return self._head + extra + b"\r\n"
