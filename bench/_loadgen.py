"""A light HTTP/1.1 load generator: raw asyncio sockets + httptools, keep-alive.

The same code drives every path (direct to the upstream, through the ironrt router,
through a peer proxy), so whatever it costs cancels out in the comparison. Requests are
pre-built bytes; each connection carries one request at a time.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field

import httptools


@dataclass(slots=True)
class Target:
    name: str
    host: str
    port: int
    plain: bytes  # a full non-streaming request, ready to write
    stream: bytes  # the streaming twin
    #: More named requests; a list is sent in turn, one request after the other.
    extra: dict[str, bytes | list[bytes]] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)

    def request(self, kind: str) -> bytes:
        if kind == "plain":
            return self.plain
        if kind == "stream":
            return self.stream
        found = self.extra[kind]
        if isinstance(found, bytes):
            return found
        turn = self.turns.get(kind, 0)
        self.turns[kind] = turn + 1
        return found[turn % len(found)]


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}:{port}",
        "content-type: application/json",
        "accept: application/json",
        f"content-length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(slots=True)
class Result:
    status: int
    ttfb: float  # seconds from the request's write to its first body byte
    total: float  # seconds from the write to the response's end
    size: int


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Result] | None = None
        self.t0 = 0.0
        self.t_body = 0.0
        self.size = 0
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)

    def on_message_begin(self) -> None:
        self.t_body = 0.0
        self.size = 0

    def on_body(self, body: bytes) -> None:
        if not self.t_body:
            self.t_body = time.perf_counter()
        self.size += len(body)

    def on_message_complete(self) -> None:
        now = time.perf_counter()
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            first = self.t_body or now
            self.waiter.set_result(
                Result(self.parser.get_status_code(), first - self.t0, now - self.t0, self.size)
            )

    async def send(self, data: bytes) -> Result:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.t0 = time.perf_counter()
        self.transport.write(data)
        return await self.waiter


class Client:
    """One keep-alive connection to one target, re-opened if the server closes it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._conn: _Conn | None = None

    async def _open(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, self.target.host, self.target.port)
        return conn

    async def call(self, kind: str = "plain", timeout: float = 30.0) -> Result:
        if self._conn is None or self._conn.closed or not self._conn.keep_alive:
            if self._conn is not None and self._conn.transport is not None:
                self._conn.transport.close()
            self._conn = await self._open()
        try:
            return await asyncio.wait_for(self._conn.send(self.target.request(kind)), timeout)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None


@dataclass(slots=True)
class Samples:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    bytes: int = 0

    def add(self, r: Result) -> None:
        self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
        if r.status != 200:
            self.errors += 1
            return
        self.ttfb.append(r.ttfb)
        self.total.append(r.total)
        self.bytes += r.size


async def alternate(
    targets: list[Target],
    kind: str,
    iterations: int,
    deadline: float,
    every: dict[str, int] | None = None,
) -> tuple[dict[str, Samples], int]:
    """Concurrency 1: each iteration calls every target once, in a rotating order.

    `every[name] = k` calls that target only every k-th iteration (a slow peer). Returns the
    samples per target and the number of iterations done (fewer if `deadline` came first).
    """
    every = every or {}
    clients = {t.name: Client(t) for t in targets}
    out = {t.name: Samples() for t in targets}
    done = 0
    try:
        for i in range(iterations):
            if time.monotonic() > deadline:
                break
            order = targets[i % len(targets) :] + targets[: i % len(targets)]
            for t in order:
                if i % every.get(t.name, 1):
                    continue
                try:
                    out[t.name].add(await clients[t.name].call(kind))
                except (OSError, asyncio.TimeoutError, ConnectionError, httptools.HttpParserError):
                    out[t.name].errors += 1
            done += 1
    finally:
        for c in clients.values():
            c.close()
    return out, done


async def saturate(
    target: Target, kind: str, concurrency: int, duration: float, max_requests: int
) -> tuple[Samples, float]:
    """`concurrency` connections, each calling back to back for `duration` seconds (or until
    `max_requests` in all). Returns the samples and the elapsed wall time."""
    samples = Samples()
    budget = [max_requests]
    clients = [Client(target) for _ in range(concurrency)]
    end = time.monotonic() + duration

    async def worker(c: Client) -> None:
        while time.monotonic() < end and budget[0] > 0:
            budget[0] -= 1
            try:
                samples.add(await c.call(kind))
            except (OSError, asyncio.TimeoutError, ConnectionError, httptools.HttpParserError):
                samples.errors += 1
                await asyncio.sleep(0.01)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in clients))
    finally:
        for c in clients:
            c.close()
    return samples, time.perf_counter() - t0
