"""One HTTP/1.1 connection: httptools parses, this protocol turns requests into `Cycle`s
run by the app one at a time, and keeps the connection honest (`ironrt.connections`
explains the limits: header deadline, body timeout, idle timeout, caps with eviction).

Requests pipelined behind one in flight wait in a queue, reading paused, and are answered
in order; an error found while parsing (bad request, headers too large, an upgrade) is
queued the same way as the final answer, so answers are never interleaved. A body is
buffered ahead of the app only up to `BODY_BUFFER`: past it reading pauses until the app
takes what it has (`receive`). Writing the answer awaits while the transport's buffer is
above its high-water mark (`pause_writing`), so a client that reads slowly holds the app
back instead of growing the daemon's memory.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from ironrt.wire.cycle import Cycle
from ironrt.wire.guard import BAD_REQUEST, FORBIDDEN, NO_UPGRADE, OVER, TIMEOUT, TOO_LARGE_HEAD

if TYPE_CHECKING:
    from ironrt.wire.server import Server

__all__ = ["BODY_BUFFER", "HEAD_LIMIT", "HttpConnection"]

#: The most a request line and its headers may take: past it, 431 and closed.
HEAD_LIMIT = 64 * 1024
#: The most request body buffered ahead of the app before reading pauses.
BODY_BUFFER = 64 * 1024

#: The usual methods' names, decoded once.
_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}
_CREDS = struct.calcsize("3i")
#: Timer phases: what a connection is waiting for when its timer runs out.
_NONE, _HEADER, _BODY, _IDLE = 0, 1, 2, 3


class _HeadTooLarge(Exception):
    pass


class HttpConnection(asyncio.Protocol):
    """One client connection of a `Server` (see the module docstring)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.guard = server.guard
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        # Answer the first of pipelined requests even if the client said `close` on it.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.write_paused = False
        #: The server is shutting down: close after the answer in flight.
        self.closing_after = False
        self._writable: asyncio.Event | None = None
        self._active: Cycle | None = None
        self._parsing: Cycle | None = None
        self._queue: deque[Cycle | bytes] = deque()
        self._read_paused = False
        self._broken = False
        self._peer: object = None
        self._counted = False
        self._client: tuple[str, int] | None = None
        self._local: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._phase = _NONE
        self._deadline = 0.0
        # The request being parsed.
        self._in_head = True
        #: Bytes received since the chunk in which the request's head began (with all of
        #: that chunk: `_first` bytes, some of which may precede the head).
        self._head_size = 0
        self._first = 0
        self._chunk = 0
        #: Between requests (the next byte begins one), and whether the chunk being
        #: parsed began so (a head that begins in it begins at its first byte).
        self._between = True
        self._chunk_fresh = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._expect = False
        self._upgrade = False
        self._too_large = False

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are no asyncio.Transport.
        self.transport = transport = cast("asyncio.Transport", transport)
        sock = transport.get_extra_info("socket")
        limits = self.guard.limits
        if sock is not None and sock.family == socket.AF_UNIX:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS)
            _pid, uid, _gid = struct.unpack("3i", creds)
            if limits.own_user_only and uid not in (os.getuid(), 0):
                self._refuse(FORBIDDEN)
                return
            self._peer = ("uid", uid)
        else:
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = transport.get_extra_info("peername")
            local = transport.get_extra_info("sockname")
            if isinstance(peer, tuple):
                self._client = (str(peer[0]), int(peer[1]))
                self._peer = self._client[0]
            if isinstance(local, tuple):
                self._local = (str(local[0]), int(local[1]))
        if not self.guard.admit(self, self._peer):
            self._refuse(OVER)
            return
        self._counted = True
        self.server.connections.add(self)
        self._waiting()
        self._arm(limits.header_timeout, _HEADER)

    def _refuse(self, answer: bytes) -> None:
        self._broken = True
        self.transport.write(answer)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.guard.evictable.pop(self, None)
        if self._counted:
            self._counted = False
            self.guard.release(self._peer)
        self.server.connections.discard(self)
        for cycle in (self._active, *self._queue):
            if isinstance(cycle, Cycle) and not cycle.response_complete:
                cycle.disconnected = True
                cycle.wake()
        self.resume_writing()

    def eof_received(self) -> None:
        return None  # a half-closed client is gone: close (the app sees a disconnect)

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        self._chunk = size = len(data)
        self._chunk_fresh = self._between
        if self._in_head:
            self._head_size += size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(NO_UPGRADE)
            return
        except httptools.HttpParserError:
            self._fail(TOO_LARGE_HEAD if self._too_large else BAD_REQUEST)
            return
        limits = self.guard.limits
        if self._in_head:
            if self._head_size > HEAD_LIMIT and self._head_over_limit():
                self._fail(TOO_LARGE_HEAD)
            elif self._phase != _HEADER:  # the first bytes of a request: its deadline runs
                self._arm(limits.header_timeout, _HEADER)
        elif self._parsing is not None:
            self._arm(limits.body_timeout, _BODY)  # a piece of body: the clock restarts
        elif self._phase != _NONE and (self._active is not None or self._queue):
            self._cancel()  # a request is in: nothing times it (its budget bounds it)

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._between = False
        # The head began in the chunk being parsed: all of it counts, for now, and unless
        # the chunk began with it, all of it may be something else (`_first`).
        self._head_size = self._chunk
        self._first = 0 if self._chunk_fresh else self._chunk
        self._chunk_fresh = False
        self._url = b""
        self._headers = []
        self._expect = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # A dozen calls a request: the least work here. The head's size is bounded by the
        # bytes received (`_head_size`), and counted exactly only past the limit.
        name = name.lower()
        self._headers.append((name, value))
        if name == b"expect":
            self._expect = value.lower() == b"100-continue"

    def _head_exact(self) -> int:
        """The size of the head parsed so far (target and complete headers)."""
        return len(self._url) + sum([len(n) + len(v) + 4 for n, v in self._headers])

    def _head_over_limit(self) -> bool:
        """An unfinished head past the limit: for sure if the chunks after its first one
        are (they are all head), or if what was parsed of it is; else not yet (a header
        still being parsed is at most the next chunk away from the first test)."""
        return self._head_size - self._first > HEAD_LIMIT or self._head_exact() > HEAD_LIMIT

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_size > HEAD_LIMIT and self._head_exact() > HEAD_LIMIT:
            self._too_large = True
            raise _HeadTooLarge
        self._head_size = 0
        parser = self.parser
        if parser.should_upgrade():
            self._upgrade = True  # refused once the parser stops (HttpParserUpgrade)
            return
        url = self._url
        if url[:1] == b"/" and b"#" not in url:
            raw_path, _, query = url.partition(b"?")
        else:
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"/", parsed.query or b""
        if not raw_path.isascii():
            raise httptools.HttpParserError("a target that is not ASCII")  # 400
        method = parser.get_method()
        cycle = Cycle(
            self,
            _METHODS.get(method) or method.decode("ascii"),
            raw_path,
            query,
            self._headers,
            parser.get_http_version(),
            parser.should_keep_alive(),
            self._expect,
        )
        self._parsing = cycle
        self.guard.evictable.pop(self, None)
        if self._active is None:
            self._active = cycle
            self._start(cycle)
        else:
            self._queue.append(cycle)
            self._pause()

    def on_body(self, body: bytes) -> None:
        cycle = self._parsing
        if cycle is None:
            return
        cycle.body += body
        if len(cycle.body) > BODY_BUFFER:
            self._pause()
        cycle.wake()

    def on_message_complete(self) -> None:
        self._between = True
        cycle = self._parsing
        if cycle is None:
            return
        self._parsing = None
        cycle.more_body = False
        cycle.wake()

    # -- cycles --------------------------------------------------------------------------

    def _start(self, cycle: Cycle) -> None:
        server = self.server
        cycle.task = task = self.loop.create_task(cycle.run(server.handler))
        server.tasks.add(task)  # until `Cycle.run` ends

    def response_done(self, cycle: Cycle) -> None:
        """The app sent the last piece of its answer: on to the next request, or close."""
        if cycle is not self._active:
            return
        transport = self.transport
        self._active = None
        if not cycle.keep_alive or cycle.more_body or transport.is_closing():
            # `more_body`: answered before its body was read (a refusal); the rest of the
            # body is of no use and the next request cannot be found behind it.
            transport.close()
            return
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, bytes):
                transport.write(item)
                transport.close()
                return
            self._active = item
            self._start(item)
            break
        if not self._queue and not self._broken:
            self._resume()
        if self._active is None:
            self._waiting()
            self._arm(self.guard.limits.keepalive_timeout, _IDLE)

    def taken(self) -> None:
        """The app took the buffered body (or waits for more): read on."""
        if self._read_paused and not self._queue and not self._broken:
            self._resume()

    def _fail(self, answer: bytes) -> None:
        """A request this connection cannot serve: answered in its turn, then closed."""
        self._broken = True
        self._in_head = False
        self._pause()
        self._cancel()
        if self._active is None:
            self.transport.write(answer)
            self.transport.close()
        else:
            self._queue.append(answer)

    def shutdown(self) -> None:
        """The server stops: close now if idle, else after the answer in flight."""
        self.closing_after = True
        if self._active is None:
            self.transport.close()
        else:
            self._active.keep_alive = False

    def drop(self) -> None:
        """Evicted to make room: close without a word (it had no request in progress)."""
        self.guard.evictable.pop(self, None)
        self._stop_timer()
        self.transport.close()

    # -- flow control --------------------------------------------------------------------

    def _pause(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._read_paused and not self.transport.is_closing():
            self._read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._writable is None:
            self._writable = asyncio.Event()
        else:
            self._writable.clear()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._writable is not None:
            self._writable.set()

    async def drain(self) -> None:
        if self._writable is not None:
            await self._writable.wait()

    # -- timers --------------------------------------------------------------------------

    def _waiting(self) -> None:
        """No request in progress: this connection may be evicted, oldest first."""
        self.guard.evictable[self] = self._peer
        self.guard.evictable.move_to_end(self)

    def _arm(self, seconds: float, phase: int) -> None:
        """Time `phase` out in `seconds`. A timer already set to fire sooner is kept (it
        re-arms for the deadline when it fires): a connection arms two or three phases a
        request, and a timer made and cancelled for each cost more than the check."""
        self._phase = phase
        self._deadline = deadline = self.loop.time() + seconds
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._expired)

    def _cancel(self) -> None:
        """Nothing times the connection now (a timer still set finds nothing to do)."""
        self._phase = _NONE

    def _stop_timer(self) -> None:
        self._phase = _NONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        phase = self._phase
        if phase == _NONE:
            return
        if self.loop.time() < self._deadline:  # armed again since it was set: not yet
            self._timer = self.loop.call_at(self._deadline, self._expired)
            return
        self._phase = _NONE
        transport = self.transport
        if transport.is_closing():
            return
        if phase == _IDLE:
            transport.close()
            return
        if phase == _BODY and self._read_paused:
            # We stopped reading (the app has not taken the body yet): not the client's fault.
            self._arm(self.guard.limits.body_timeout, _BODY)
            return
        self.guard.timed_out += 1
        active = self._active
        if phase == _BODY and active is not None and active is self._parsing:
            # The app waits for a body that stopped coming: it sees the client leave.
            active.disconnected = True
            active.wake()
            if not active.head_written:
                transport.write(TIMEOUT)
            transport.close()
            return
        self._fail(TIMEOUT)
