"""The book of one server's connections and the limits it keeps (see `ironrt.connections`
for the policy): counts per peer and in total, and which connections may be evicted.

Kept apart from the protocol so the policy reads in one place and the protocol only calls
`admit`, `release` and marks itself evictable or busy.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["ConnectionLimits", "Evictable", "Guard", "answer"]


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


class Evictable(Protocol):
    def drop(self) -> None:
        """Close without a word: the connection had no request in progress."""


@dataclass(slots=True)
class Guard:
    """One server's book of open connections: counts per peer, and the connections that
    may be evicted (no request in progress), oldest first."""

    limits: ConnectionLimits
    per_peer: dict[object, int] = field(default_factory=dict)
    total: int = 0
    #: Connections with no request in progress, in the order they became so.
    evictable: OrderedDict[Evictable, object] = field(default_factory=OrderedDict)
    refused: int = 0
    evicted: int = 0
    timed_out: int = 0

    def admit(self, conn: Evictable, peer: object) -> bool:
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


def _error(message: str, kind: str, code: str) -> bytes:
    return (
        b'{"error":{"message":"ironrt: '
        + message.encode()
        + b'","type":"'
        + kind.encode()
        + b'","param":null,"code":"'
        + code.encode()
        + b'"}}'
    )


def answer(status: bytes, body: bytes, *extra: bytes) -> bytes:
    """A whole answer that closes the connection: what the server says on its own."""
    head = [
        b"HTTP/1.1 " + status,
        b"content-type: application/json",
        b"connection: close",
        *extra,
        b"content-length: " + str(len(body)).encode(),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


OVER = answer(
    b"503 Service Unavailable",
    _error(
        "too many connections are busy; retry shortly", "overloaded_error", "too_many_connections"
    ),
    b"retry-after: 1",
)
TIMEOUT = answer(
    b"408 Request Timeout",
    _error("the request did not arrive in time", "invalid_request_error", "request_timeout"),
)
FORBIDDEN = answer(
    b"403 Forbidden",
    b'{"error":{"code":"forbidden","message":"this daemon only answers its own user",'
    b'"field":null}}',
)
BAD_REQUEST = answer(
    b"400 Bad Request",
    _error("invalid HTTP request", "invalid_request_error", "bad_request"),
)
TOO_LARGE_HEAD = answer(
    b"431 Request Header Fields Too Large",
    _error(
        "the request line and headers are too large",
        "invalid_request_error",
        "request_header_fields_too_large",
    ),
)
NO_UPGRADE = answer(
    b"501 Not Implemented",
    _error(
        "protocol upgrades and CONNECT are not supported",
        "invalid_request_error",
        "not_implemented",
    ),
)
INTERNAL = answer(
    b"500 Internal Server Error",
    _error(
        "internal error while answering; the daemon log has the details",
        "api_error",
        "internal_error",
    ),
)
