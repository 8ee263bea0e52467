"""The HTTP transport: ironrt's own keep-alive pool (`ironrt.wire`), one per provider.

The upstream client is ours (asyncio protocols, httptools' parser, one write per
request): aiohttp's general machinery was 8-10 % of the daemon's CPU per call and its
import a fifth of the daemon's start; httpx cost three times aiohttp per call. httpx
stays the client of the control socket, where that does not matter.

One try per `attempt`; the retry loop is `retrying.py`'s, the same over every transport.
The one retry made here is the pool's: a request written on a kept-alive connection the
server had just closed, before any byte of an answer (never processed: see wire/pool.py).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from ironrt.governance.flow import Flow
from ironrt.policies.settings import ReliabilitySettings
from ironrt.transports.base import Answer, AttemptFailed, Outgoing
from ironrt.wire.client import (
    ConnectError,
    ConnectTimeout,
    HTTPError,
    ReadTimeout,
    Response,
)
from ironrt.wire.pool import Pool

_HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
    }
)
_DROP_FROM_UPSTREAM = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"content-encoding",
        b"date",
        b"server",
        b"alt-svc",
        b"set-cookie",
    }
)
#: The upstream headers the router itself reads.
_READ = frozenset({b"content-type", b"retry-after", b"retry-after-ms"})

#: What uvicorn refuses in a header it sends (its own `HEADER_RE`, `HEADER_VALUE_RE`).
_BAD_NAME = re.compile(rb'[\x00-\x1f\x7f()<>@,;:\\\[\]={} \t"]')
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

#: The exact input count at the budget margin must not stall a call for long.
COUNT_TIMEOUT_S = 10.0


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    content_type: str
    _resp: Response
    retry_after: float | None = None

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """Chunks as the network delivers them: nothing waits for a buffer to fill."""
        return self._resp.iter_bytes()

    async def read(self) -> bytes:
        return await self._resp.read()

    async def aclose(self) -> None:
        await self._resp.aclose()


@functools.lru_cache(maxsize=64)
def skipped_bytes(drop: tuple[str, ...]) -> frozenset[bytes]:
    """The agent's headers never forwarded: the hop-by-hop ones and `drop` (a provider's
    auth headers, which carry the IC_TOKEN), as one set of raw names: one test a header
    instead of two. A provider has one `drop`: a few entries at most."""
    return frozenset(name.encode("latin-1") for name in _HOP_BY_HOP | frozenset(drop))


def response_headers(
    raw: list[tuple[bytes, bytes]],
) -> tuple[list[tuple[bytes, bytes]], dict[str, str]]:
    """The upstream's headers fit to relay, as the bytes that came in (names lower-cased),
    and the few the router reads (content-type, retry-after), decoded. A header the
    router's own HTTP server refuses to send (a control character: the parser accepts
    them) is dropped: relaying it would fail the answer to a call the provider already
    billed."""
    out: list[tuple[bytes, bytes]] = []
    read: dict[str, str] = {}
    # One search over all names and one over all values finds whether any header is
    # bad (the usual answer: none); only then is each checked, to drop just that one.
    clean = (
        _BAD_NAME.search(b"".join([k for k, _ in raw])) is None
        and _BAD_VALUE.search(b"".join([v for _, v in raw])) is None
    )
    for k, v in raw:
        name = k.lower()
        if name in _READ:
            read[name.decode("latin-1")] = v.decode("latin-1")
        if name in _DROP_FROM_UPSTREAM:
            continue
        if clean or (_BAD_NAME.search(name) is None and _BAD_VALUE.search(v) is None):
            out.append((name, v))
    return out, read


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        import email.utils  # an HTTP date: rare (off the start path, ~3 ms to import)

        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(parsed.timestamp() - time.time(), 0.0)


class Upstream:
    """One keep-alive pool per provider (its timeouts); created lazily, closed with the
    daemon."""

    def __init__(self, settings: ReliabilitySettings) -> None:
        self.settings = settings
        self._pools: dict[str, Pool] = {}
        self._proxies: dict[str, str | None] = {}
        self._proxy_of_url: dict[str, str | None] = {}

    def proxy_for(self, url: str) -> str | None:
        """HTTP(S)_PROXY for `url`'s host unless NO_PROXY exempts it; looked up once a host
        (and kept per URL: a router sends nearly every call to one of a few)."""
        try:
            return self._proxy_of_url[url]
        except KeyError:
            pass
        proxy = self._proxy_for_host(url)
        if len(url) <= 2048:  # a long query is looked up by its host each time
            if len(self._proxy_of_url) >= 256:
                self._proxy_of_url.clear()
            self._proxy_of_url[url] = proxy
        return proxy

    def _proxy_for_host(self, url: str) -> str | None:
        scheme, _, rest = url.partition("://")
        host = rest.split("/", 1)[0]
        key = f"{scheme}://{host}"
        if key not in self._proxies:
            import urllib.request  # once a host: off the daemon's start (~10 ms to import)

            proxies = urllib.request.getproxies_environment()
            hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            bypass = bool(proxies) and urllib.request.proxy_bypass(hostname)
            self._proxies[key] = None if bypass else proxies.get(scheme)
        return self._proxies[key]

    def pool(self, provider: str) -> Pool:
        pool = self._pools.get(provider)
        if pool is None:
            t = self.settings.timeouts(provider)
            # read_s is also what cuts a stalled stream: no byte for read_s seconds.
            pool = Pool(
                connect_timeout=t.connect_s,
                read_timeout=t.read_s,
                max_connections=512,
                keepalive_s=60.0,
            )
            self._pools[provider] = pool
        return pool

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()

    async def attempt(self, flow: Flow, request: Outgoing) -> Answer:
        url = request.url
        try:
            resp = await self.pool(flow.provider).request(
                request.method,
                url,
                request.headers,
                request.content,
                self.proxy_for(url),
                request.lines,
            )
        except (ConnectError, ConnectTimeout) as exc:
            # The request never left: a retry cannot double-bill.
            raise AttemptFailed("connect", _describe(exc, url)) from None
        except ReadTimeout as exc:
            raise AttemptFailed("timeout", _describe(exc, url)) from None
        except HTTPError as exc:
            raise AttemptFailed("protocol", _describe(exc, url)) from None
        headers, read = response_headers(resp.headers)
        return UpstreamResponse(
            resp.status,
            headers,
            read.get("content-type", ""),
            resp,
            retry_after_seconds(read),
        )

    async def post_json(
        self, provider: str, url: str, headers: dict[str, str], content: bytes, lines: bytes = b""
    ) -> tuple[int, Any] | None:
        """One plain POST with a JSON answer (the count endpoints): no retries, no policies,
        a short deadline; None on any failure, which the caller treats as "unknown"."""
        try:
            with anyio.fail_after(COUNT_TIMEOUT_S):
                resp = await self.pool(provider).request(
                    "POST", url, headers, content, self.proxy_for(url), lines
                )
                try:
                    data = await resp.read()
                finally:
                    await resp.aclose()
        except (HTTPError, TimeoutError, OSError):
            return None
        try:
            return resp.status, msgspec.json.decode(data)
        except (msgspec.DecodeError, RecursionError):
            return None


#: Names of the wire's own errors that say the same as another: a connection closed under a
#: request is a protocol failure, asyncio's timeout a read timeout. (ironrt.wire's other
#: errors, and httpx's in library mode, already carry the names traces use.)
_KINDS = {
    "StaleConnection": "RemoteProtocolError",
    "TimeoutError": "ReadTimeout",
}


def error_kind(exc: BaseException) -> str:
    """A short, stable name for what went wrong on the wire (traces and messages use it)."""
    return _KINDS.get(type(exc).__name__, type(exc).__name__)


def _describe(exc: BaseException, url: str) -> str:
    host = url.split("://", 1)[-1].split("/", 1)[0]
    detail = str(exc) or type(exc).__name__
    return f"{error_kind(exc)} reaching {host}: {detail}"
