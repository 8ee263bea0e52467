"""A keep-alive pool of upstream connections per origin (scheme, host, port, proxy).

Connections are reused most recently used first (the likeliest to be still open), closed
after `keepalive_s` idle (a server's own idle timeout is usually longer, and a stale one
is caught anyway: see below), and capped at `max_connections` in all; a caller over the
cap waits for one to close, an idle one of another origin being closed to make room.

A kept-alive connection the server closed is dropped from the pool as soon as its EOF is
seen. The race of a request written just as the server closed an idle connection (EOF or
reset before any byte of the answer) is retried once on a fresh connection: the server
closed without reading the request, so it was never processed (what urllib3, httpx and
browsers do). Any other failure after the write is the caller's ("sent, maybe billed").

Proxies: an http:// origin through a proxy is asked in absolute form on a connection to
the proxy; an https:// origin through one gets `CONNECT host:port`, then TLS to the
origin inside the tunnel. The proxy URL's userinfo is sent as `Proxy-Authorization:
Basic`. The TLS context is made once, on first use (it costs start-up time).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ssl
from collections import deque
from urllib.parse import unquote, urlsplit

import msgspec

from ironrt.wire.client import (
    ConnectError,
    Connection,
    ConnectTimeout,
    Response,
    StaleConnection,
    request_head,
)

__all__ = ["Origin", "Pool", "default_ssl_context", "split_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: URLs whose route a pool keeps (past it, it starts again: a router has a few).
_ROUTES = 256
#: A URL longer than this (a long query) is routed each time, not kept.
_ROUTE_URL_MAX = 2048


class Origin(msgspec.Struct, frozen=True):
    """Where a connection goes: the target and, if any, the proxy it goes through."""

    scheme: str
    host: str
    port: int
    proxy: str | None = None

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def host_header(self) -> str:
        if self.port == _DEFAULT_PORTS.get(self.scheme):
            return f"[{self.host}]" if ":" in self.host else self.host
        return self.authority


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The system's trust store (SSL_CERT_FILE honoured), made once, on first use."""
    return ssl.create_default_context()


@functools.lru_cache(maxsize=256)
def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, target) of an absolute URL, the target (path and query) as
    given: it is already encoded, and nothing may re-normalise it (see router/paths.py).
    Cached: a router sends nearly every call to one of a few URLs (a bad one raises, and
    is not kept)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _DEFAULT_PORTS:
        raise ConnectError(f"unsupported URL scheme in {url.split('?', 1)[0]!r}")
    cut = len(rest)
    for ch in "/?":
        at = rest.find(ch)
        if at != -1:
            cut = min(cut, at)
    authority, target = rest[:cut], rest[cut:]
    if not target.startswith("/"):
        target = "/" + target
    authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        host, _, port = authority[1:].partition("]")
        port = port[1:]
    else:
        host, _, port = authority.partition(":")
    try:
        number = int(port) if port else _DEFAULT_PORTS[scheme]
    except ValueError:
        raise ConnectError(f"bad port in {authority!r}") from None
    return scheme, host, number, target


def _proxy_auth(proxy: str) -> str:
    parts = urlsplit(proxy)
    if parts.username is None:
        return ""
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return f"proxy-authorization: Basic {base64.b64encode(pair).decode('ascii')}\r\n"


class Pool:
    """Keep-alive connections for one set of timeouts (the daemon has one per provider)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = 512,
        keepalive_s: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._idle: dict[Origin, list[Connection]] = {}
        self._routes: dict[tuple[str, str | None], tuple[Origin, str, str, str]] = {}
        self._origin_of: dict[Connection, Origin] = {}
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        #: Connections opened so far (tests and the bench read it).
        self.opened = 0

    @property
    def size(self) -> int:
        """Open connections, idle and busy, and those being opened."""
        return len(self._origin_of) + self._opening

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        proxy: str | None = None,
        lines: bytes = b"",
    ) -> Response:
        """Send one request (one write) and return its answer, head read, body not yet.
        `lines`: more header lines, encoded and checked by the caller (`request_head`)."""
        route = self._routes.get((url, proxy))
        if route is None:
            route = self._route(url, proxy)
        origin, target, host, extra = route
        data = request_head(method, target, host, headers, len(body), extra, lines)
        if body:
            data += body
        head_only = method == "HEAD"
        conn = await self._acquire(origin)
        try:
            response = await conn.send(data, head_only)
        except StaleConnection:
            conn = await self._open(origin)  # once, fresh: the request was never read
            response = await conn.send(data, head_only)
        response.release = self._release
        return response

    def _route(self, url: str, proxy: str | None) -> tuple[Origin, str, str, str]:
        """Where `url` goes and how it is asked for: its origin, the request target, the
        host header, a proxy's credentials. Kept per URL (a router sends nearly every
        call to one of a few; a bad or long URL is not kept; at most `_ROUTES`)."""
        scheme, host, port, target = split_url(url)
        origin = Origin(scheme, host, port, proxy)
        extra = ""
        if proxy is not None and scheme == "http":
            target = f"http://{origin.host_header}{target}"  # absolute form, to the proxy
            extra = _proxy_auth(proxy)
        route = (origin, target, origin.host_header, extra)
        if len(url) <= _ROUTE_URL_MAX:
            if len(self._routes) >= _ROUTES:
                self._routes.clear()
            self._routes[(url, proxy)] = route
        return route

    async def aclose(self) -> None:
        """Close every connection, idle or busy (the daemon is stopping)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._origin_of):
            conn.abort()
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)  # let the transports run connection_lost

    # ---- acquiring ----------------------------------------------------------------------

    async def _acquire(self, origin: Origin) -> Connection:
        while True:
            conn = self._pop_idle(origin)
            if conn is not None:
                return conn
            if self.size < self.max_connections or self._closed or self._evict_idle():
                return await self._open(origin)
            await self._wait_for_room()

    def _pop_idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        if idle:
            now = idle[-1].loop.time()  # the running loop's clock, without looking it up
            while idle:
                conn = idle.pop()
                if not conn.alive:
                    continue
                if now - conn.idle_since >= self.keepalive_s:
                    conn.close()
                    continue
                return conn
        return None

    async def _wait_for_room(self) -> None:
        """Until a connection closes or goes idle (the caller looks again)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _open(self, origin: Origin) -> Connection:
        while self.size >= self.max_connections and not self._closed:
            if not self._evict_idle():
                await self._wait_for_room()
        if self._closed:
            raise ConnectError("the connection pool is closed")
        self._opening += 1
        try:
            conn = await asyncio.wait_for(self._connect(origin), self.connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectTimeout(f"no connection within {self.connect_timeout:g} s") from None
        finally:
            self._opening -= 1
            self._wake_one()
        if not conn.alive:
            raise ConnectError("the server closed the connection as it opened")
        self.opened += 1
        self._origin_of[conn] = origin
        conn.on_close = self._forget
        return conn

    async def _connect(self, origin: Origin) -> Connection:
        loop = asyncio.get_running_loop()
        conn = Connection(self.read_timeout)
        tls = origin.scheme == "https"
        try:
            if origin.proxy is None:
                await loop.create_connection(
                    lambda: conn,
                    origin.host,
                    origin.port,
                    ssl=self._context() if tls else None,
                    server_hostname=origin.host if tls else None,
                )
                return conn
            _, phost, pport, _ = split_url(origin.proxy)
            proxy_tls = origin.proxy.startswith("https:")
            await loop.create_connection(
                lambda: conn,
                phost,
                pport,
                ssl=self._context() if proxy_tls else None,
                server_hostname=phost if proxy_tls else None,
            )
            if tls:
                await conn.tunnel(origin.authority, _proxy_auth(origin.proxy))
                assert conn.transport is not None
                conn.transport = await loop.start_tls(
                    conn.transport, conn, self._context(), server_hostname=origin.host
                )
            return conn
        except (OSError, ssl.CertificateError) as exc:
            conn.abort()
            raise ConnectError(str(exc) or type(exc).__name__) from None
        except BaseException:
            conn.abort()
            raise

    def _context(self) -> ssl.SSLContext:
        return self._ssl if self._ssl is not None else default_ssl_context()

    # ---- releasing ----------------------------------------------------------------------

    def _release(self, conn: Connection) -> None:
        origin = self._origin_of.get(conn)
        if origin is None or self._closed or not conn.alive:
            conn.close()
            return
        self._idle.setdefault(origin, []).append(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self.keepalive_s, self._sweep)
        self._wake_one()

    def _forget(self, conn: Connection) -> None:
        origin = self._origin_of.pop(conn, None)
        if origin is not None:
            idle = self._idle.get(origin)
            if idle and conn in idle:
                idle.remove(conn)
        self._wake_one()

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection of any origin, to make room for another."""
        oldest: Connection | None = None
        for idle in self._idle.values():
            for conn in idle:
                if not conn.closed and (oldest is None or conn.idle_since < oldest.idle_since):
                    oldest = conn
        if oldest is None:
            return False
        self._forget(oldest)
        oldest.on_close = None
        oldest.close()
        return True

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        """Close connections idle for `keepalive_s`; come back for the next to expire."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        first: float | None = None
        for idle in self._idle.values():
            for conn in list(idle):
                if now - conn.idle_since >= self.keepalive_s:
                    conn.close()
                elif first is None or conn.idle_since < first:
                    first = conn.idle_since
        if first is not None:
            self._sweeper = asyncio.get_running_loop().call_later(
                first + self.keepalive_s - now, self._sweep
            )
