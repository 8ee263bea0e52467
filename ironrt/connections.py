"""Connections of both servers, kept honest: slow clients are timed out, and no local
process can hold so many connections that agents cannot reach the router.

uvicorn (httptools) parses HTTP; this protocol subclass adds what it lacks:

- a **header deadline**: a request's headers must arrive whole within `header_timeout` of
  the connection opening (or of the request's first byte on a kept-alive connection). A
  slowloris client sending a byte a second, or a client that connects and says nothing,
  is answered 408 and closed;
- a **body timeout**: no more than `body_timeout` seconds between two pieces of a body
  (the clock stops while the server itself has paused reading);
- an **idle keep-alive timeout** (uvicorn's own `timeout_keep_alive`);
- **caps on connections**, per peer and in total. A peer is the client's address on TCP
  and its user id on the Unix socket. On loopback every local process has the same
  address, so the caps alone would let one process lock agents out; instead, a connection
  over a cap first **evicts the oldest connection that is not in the middle of a request**
  (silent, or between requests, or still trickling its headers). Only when every
  connection is busy with a request is the new one refused, at once, with a 503.

Once a request's headers are in, nothing here limits it: an LLM call may stream for many
minutes, and its budget, not a timer, is what bounds it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "Guard", "guarded_protocol"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits of one server's connections."""

    max_total: int = 4096
    max_per_peer: int = 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 15.0
    #: Unix socket: only this user (and root) may talk to the daemon.
    own_user_only: bool = False


@dataclass(slots=True)
class Guard:
    """One server's book of open connections: counts per peer, and the connections that
    may be evicted (no request in progress), oldest first."""

    limits: ConnectionLimits
    per_peer: dict[object, int] = field(default_factory=dict)
    total: int = 0
    #: Connections with no request in progress, in the order they became so.
    evictable: OrderedDict[GuardedProtocol, object] = field(default_factory=OrderedDict)
    refused: int = 0
    evicted: int = 0
    timed_out: int = 0

    def admit(self, conn: GuardedProtocol, peer: object) -> bool:
        """Count a new connection in, evicting idle ones over a cap; False: refuse it."""
        limits = self.limits
        if self.per_peer.get(peer, 0) >= limits.max_per_peer and not self._evict(peer):
            self.refused += 1
            return False
        if self.total >= limits.max_total and not self._evict(None):
            self.refused += 1
            return False
        self.per_peer[peer] = self.per_peer.get(peer, 0) + 1
        self.total += 1
        return True

    def release(self, peer: object) -> None:
        self.total -= 1
        left = self.per_peer.get(peer, 1) - 1
        if left:
            self.per_peer[peer] = left
        else:
            self.per_peer.pop(peer, None)

    def _evict(self, peer: object | None) -> bool:
        for conn, conn_peer in self.evictable.items():
            if peer is None or conn_peer == peer:
                self.evicted += 1
                conn.drop()
                return True
        return False


_OVER = (
    b'{"error":{"message":"ironrt: too many connections are busy; retry shortly",'
    b'"type":"overloaded_error","param":null,"code":"too_many_connections"}}'
)
_TIMEOUT = (
    b'{"error":{"message":"ironrt: the request did not arrive in time",'
    b'"type":"invalid_request_error","param":null,"code":"request_timeout"}}'
)
_FORBIDDEN = (
    b'{"error":{"code":"forbidden","message":"this daemon only answers its own user","field":null}}'
)


def _answer(status: bytes, body: bytes, *extra: bytes) -> bytes:
    head = [
        b"HTTP/1.1 " + status,
        b"content-type: application/json",
        b"connection: close",
        *extra,
        b"content-length: " + str(len(body)).encode(),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines and caps (see the module docstring)."""

    guard: ClassVar[Guard]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._peer: object = None
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._in_request = False
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if self.guard.limits.own_user_only and uid not in (os.getuid(), 0):
                self._refuse(_answer(b"403 Forbidden", _FORBIDDEN))
                return
            self._peer = ("uid", uid)
        else:
            self._peer = self.client[0] if self.client else None
        if not self.guard.admit(self, self._peer):
            self._refuse(_answer(b"503 Service Unavailable", _OVER, b"retry-after: 1"))
            return
        self._counted = True
        self._waiting()
        self._arm(self.guard.limits.header_timeout)

    def _refuse(self, answer: bytes) -> None:
        self.transport.write(answer)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.guard.evictable.pop(self, None)
        if self._counted:
            self._counted = False
            self.guard.release(self._peer)
        super().connection_lost(exc)

    # -- phases --------------------------------------------------------------------------

    def _waiting(self) -> None:
        """No request in progress: this connection may be evicted, oldest first."""
        self._in_request = False
        self.guard.evictable[self] = self._peer
        self.guard.evictable.move_to_end(self)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # the first byte of a request on a kept-alive connection
            self._arm(self.guard.limits.header_timeout)

    def on_headers_complete(self) -> None:
        self._in_request = True
        self.guard.evictable.pop(self, None)
        self._arm(self.guard.limits.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._in_request:
            self._arm(self.guard.limits.body_timeout)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._cancel()
        if self.cycle is not None and self.cycle.more_body:
            # Answered before its body was read (a refusal): the rest of the body is of no
            # use and the next request cannot be found behind it.
            self.transport.close()
        super().on_response_complete()
        if not self.transport.is_closing():
            self._waiting()  # uvicorn armed its keep-alive timeout

    # -- timers --------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._cancel()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._in_request and self.flow.read_paused:
            # We stopped reading (the app has not taken the body yet): not the client's fault.
            self._arm(self.guard.limits.body_timeout)
            return
        self.guard.timed_out += 1
        self._refuse(_answer(b"408 Request Timeout", _TIMEOUT))

    def drop(self) -> None:
        """Evicted to make room: close without a word (it had no request in progress)."""
        self.guard.evictable.pop(self, None)
        self._cancel()
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> tuple[type[GuardedProtocol], Guard]:
    """A protocol class for one server, with its own book of connections."""
    guard = Guard(limits)
    cls = type("GuardedServerProtocol", (GuardedProtocol,), {"guard": guard})
    return cls, guard
