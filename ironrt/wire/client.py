"""One upstream HTTP/1.1 connection: an asyncio.Protocol feeding httptools' response parser.

Why not aiohttp: on the router's hot path its general machinery (ClientRequest, cookie
jars, auto headers, per-read timer rescheduling) was 8-10 % of the daemon's CPU per call,
and importing it a fifth of the daemon's start. A call here is one `transport.write` of a
pre-joined header block and body, and the parsing is httptools' (llhttp), never ours.

The connection does one exchange at a time (no pipelining). Its body is handed to the
reader as the network delivers it (SSE events pass one by one); more than `HIGH_WATER`
bytes buffered and unread pause the socket until the reader catches up. The read timeout
is "no byte for `read_timeout` seconds while the reader waits": one timer per timeout
period, checked against the time of the last byte, not rescheduled on every read.

Errors: `client_errors.py` (what each means for a retry).
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import cast

import httptools

from ironrt.wire.client_codec import body_decoder, request_head
from ironrt.wire.client_errors import (
    ConnectError,
    ConnectTimeout,
    HTTPError,
    ReadTimeout,
    RemoteProtocolError,
    StaleConnection,
)

__all__ = [
    "HIGH_WATER",
    "ConnectError",
    "ConnectTimeout",
    "Connection",
    "HTTPError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
    "StaleConnection",
    "request_head",
]

#: Unread body bytes above which the socket stops being read (resumed once consumed).
HIGH_WATER = 256 * 1024


def _parser(conn: Connection) -> httptools.HttpResponseParser:
    """Header values with control characters are parsed, not refused: aiohttp took them,
    and `response_headers` drops such a header rather than failing an answer the provider
    already billed."""
    parser = httptools.HttpResponseParser(conn)
    parser.set_dangerous_leniencies(lenient_headers=True)
    return parser


class Connection(asyncio.Protocol):
    """One socket to one origin (or through a proxy), one exchange at a time."""

    def __init__(self, read_timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = _parser(self)
        #: Called once when the socket is gone (the pool forgets the connection).
        self.on_close: Callable[[Connection], None] | None = None
        self.closed = False
        #: Has answered before: a death before the first byte is a stale keep-alive.
        self.reused = False
        self.idle_since = 0.0
        self._busy = False
        self._tunneling = False
        self._head_only = False
        self._got_bytes = False
        self._interim = False
        self._head_done = False
        self._done = False
        self._keep_alive = True
        self._length_known = False
        self._encoding = b""
        self._decompress: zlib._Decompress | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._last_io = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # ---- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are no asyncio.Transport.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if not self._busy:
            # Bytes while idle: nothing may follow a finished answer. Unusable.
            self.close()
            return
        self._last_io = self.loop.time()
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, HTTPError) else RemoteProtocolError(str(exc)))
        except httptools.HttpParserError as exc:
            self._fail(RemoteProtocolError(f"malformed response: {exc}"))

    def eof_received(self) -> bool | None:
        return False  # close: the answer ends here (or is cut), connection_lost decides

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self._busy and not self._done and self._exc is None:
            if not self._head_done:
                if self.reused and not self._got_bytes:
                    self._fail(StaleConnection("the kept-alive connection was closed"))
                else:
                    self._fail(RemoteProtocolError("server disconnected without an answer"))
            elif not self._length_known and not self._tunneling:
                self._complete()  # a close-delimited body ends with the connection
            else:
                self._fail(RemoteProtocolError("response payload is not completed"))
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close(self)

    # ---- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._done:
            self._keep_alive = False  # more after a finished answer: never reuse
        self.headers = []
        self._length_known = False
        self._encoding = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            self._length_known = True
        elif lower == b"transfer-encoding":
            self._length_known = self._length_known or b"chunked" in value.lower()
        elif lower == b"content-encoding":
            self._encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if self._tunneling:
            self.status = status
            self._head_done = True
            self._wake()
            return
        if 100 <= status < 200:
            if status == 101:
                raise RemoteProtocolError("the server switched protocols")
            self._interim = True  # 100 Continue, 103 Early Hints: the answer follows
            return
        self.status = status
        self._keep_alive = self.parser.should_keep_alive()
        self._decompress = body_decoder(self._encoding)
        self._head_done = True
        if self._head_only:
            self._keep_alive = False  # the parser cannot know a HEAD answer has no body
            self._complete()
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._tunneling:
            raise RemoteProtocolError("the proxy sent bytes after its CONNECT answer")
        if self._done:
            return
        if self._decompress is not None:
            try:
                body = self._decompress.decompress(body)
            except zlib.error as exc:
                raise RemoteProtocolError(f"cannot decode the body: {exc}") from None
            if not body:
                return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete()

    # ---- the exchange -------------------------------------------------------------------

    async def tunnel(self, authority: str, extra: str) -> None:
        """CONNECT `authority` through the proxy this socket reaches; then TLS may start."""
        self._start(request_head("CONNECT", authority, authority, {}, 0, extra), False)
        self._tunneling = True
        try:
            await self._wait_head()
        finally:
            self._tunneling = False
            self._busy = False
        if not 200 <= self.status < 300:
            raise ConnectError(f"the proxy refused CONNECT {authority}: HTTP {self.status}")
        self.parser = _parser(self)

    async def send(self, data: bytes, head_only: bool = False) -> Response:
        """Write one request (one write); return once the answer's head is in."""
        self._start(data, head_only)
        self._arm()
        await self._wait_head()
        return Response(self)

    def _start(self, data: bytes, head_only: bool) -> None:
        if self.transport is None or self.closed:
            raise StaleConnection("the connection is closed")
        self._busy = True
        self._head_only = head_only
        self._got_bytes = self._interim = self._head_done = self._done = False
        self._exc = None
        self.status = 0
        self.headers = []
        self.transport.write(data)

    async def _wait_head(self) -> None:
        try:
            while not self._head_done:
                if self._exc is not None:
                    raise self._exc
                await self._wait()
        except BaseException:
            self.close()  # cancelled or failed mid-exchange: the stream is unusable
            raise

    def whole_body(self) -> bytes | None:
        """All of the body at once if the answer is complete (None: more is coming, or
        it failed). Most answers are: a JSON body arrives with its head."""
        if not self._done or self._exc is not None:
            return None
        body = self._body
        data = body.popleft() if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False  # reading stopped for a reader that has now read it all
            self.transport.resume_reading()
        return data

    async def next_chunk(self) -> bytes | None:
        """The body bytes received so far and unread (None at the end of the body)."""
        while True:
            if self._body:
                body = self._body
                data = body.popleft() if len(body) == 1 else b"".join(body)
                body.clear()
                self._buffered = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self._last_io = self.loop.time()
                    self.transport.resume_reading()
                return data
            if self._exc is not None:
                raise self._exc
            if self._done:
                return None
            await self._wait()

    @property
    def alive(self) -> bool:
        """Open and not closing (close() is effective before connection_lost runs)."""
        t = self.transport
        return not self.closed and t is not None and not t.is_closing()

    @property
    def reusable(self) -> bool:
        """The answer is complete and the server keeps the connection open."""
        return self._done and self._keep_alive and self._exc is None and self.alive

    def discard_body(self) -> None:
        self._body.clear()
        self._buffered = 0

    def idle(self) -> None:
        """The exchange is over and its body read: ready for the next one."""
        self._busy = False
        self.reused = True
        self.idle_since = self.loop.time()

    def close(self) -> None:
        self._keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        self._keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # ---- internals ----------------------------------------------------------------------

    async def _wait(self) -> None:
        waiter = self.loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _complete(self) -> None:
        if self._decompress is not None:
            tail = self._decompress.flush()
            if tail:
                self._body.append(tail)
        self._done = True  # a timer still set finds the exchange done, and stops
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        self._cancel_timer()
        self._wake()
        self.abort()

    def _arm(self) -> None:
        """The read timeout runs from now. A timer still set from an earlier exchange is
        kept: it fires sooner than this one's deadline and re-arms for it (`_on_timer`)."""
        self._last_io = now = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_at(now + self.read_timeout, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if not self._busy or self._done or self._exc is not None:
            return
        now = self.loop.time()
        if self._paused:  # the reader is behind, not the server: the clock stops
            self._last_io = now
        deadline = self._last_io + self.read_timeout
        if now < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        self._fail(ReadTimeout(f"no data for {self.read_timeout:g} s"))


class Response:
    """An answer's head, and its body as it arrives. `release` (the pool's) takes the
    connection back once the body is complete; closing earlier closes the connection."""

    __slots__ = ("_conn", "_finished", "headers", "release", "status")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self.release: Callable[[Connection], None] | None = None
        self._finished = False

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Chunks as the network delivers them: nothing waits for a buffer to fill."""
        while True:
            chunk = await self._next()
            if chunk is None:
                return
            yield chunk

    async def read(self) -> bytes:
        if not self._finished:
            data = self._conn.whole_body()
            if data is not None:
                self._finish()
                return data
        parts = []
        while (chunk := await self._next()) is not None:
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def aclose(self) -> None:
        self._finish()

    async def _next(self) -> bytes | None:
        if self._finished:
            return None
        try:
            chunk = await self._conn.next_chunk()
        except BaseException:
            self._finish()
            raise
        if chunk is None:
            self._finish()
        return chunk

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        conn = self._conn
        if conn.reusable and self.release is not None:
            conn.discard_body()
            conn.idle()
            self.release(conn)
        else:
            conn.close()
