"""Reaching the provider: pooled HTTP clients, retries driven by the policies, and the
built-in offline provider behind the same interface.

The router's relay code sees one `UpstreamResponse` whether the answer came over the
network or from the offline provider, so offline runs exercise exactly the code paths
(streaming, usage, pricing, policies) a real provider does.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from ironrt.policies.settings import ReliabilitySettings
from ironrt.router.flow import Attempt, Flow
from ironrt.router.offline import offline_response
from ironrt.router.pipeline import Pipeline

_HOP_BY_HOP = frozenset(
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
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "date",
        "server",
        "alt-svc",
        "set-cookie",
    }
)


class UpstreamUnavailable(Exception):
    """No HTTP answer at all (connect error, timeout, protocol error), retries exhausted."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    content_type: str
    _httpx: httpx.Response | None = None
    _chunks: list[bytes] = field(default_factory=list)

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        if self._httpx is None:
            for chunk in self._chunks:
                yield chunk
            return
        async for chunk in self._httpx.aiter_bytes():
            yield chunk

    async def read(self) -> bytes:
        if self._httpx is None:
            return b"".join(self._chunks)
        return await self._httpx.aread()

    async def aclose(self) -> None:
        if self._httpx is not None:
            await self._httpx.aclose()


def forward_headers(
    scope_headers: list[tuple[bytes, bytes]], drop: tuple[str, ...]
) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in scope_headers:
        name = raw_name.decode("latin-1").lower()
        if name in _HOP_BY_HOP or name in drop:
            continue
        out[name] = raw_value.decode("latin-1")
    out["accept-encoding"] = "identity"  # usage is read from the body: no compression
    return out


def response_headers(resp: httpx.Response) -> list[tuple[bytes, bytes]]:
    return [
        (k, v)
        for k, v in resp.headers.raw
        if k.decode("latin-1").lower() not in _DROP_FROM_UPSTREAM
    ]


def retry_after_seconds(headers: httpx.Headers) -> float | None:
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
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(parsed.timestamp() - time.time(), 0.0)


class Upstream:
    """One pooled client per provider; created lazily, closed with the daemon."""

    def __init__(self, settings: ReliabilitySettings) -> None:
        self.settings = settings
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, provider: str) -> httpx.AsyncClient:
        client = self._clients.get(provider)
        if client is None:
            t = self.settings.timeouts(provider)
            # The read timeout is also what cuts a stalled stream: no byte for read_s.
            timeout = httpx.Timeout(
                connect=t.connect_s, read=t.read_s, write=30.0, pool=t.connect_s
            )
            client = httpx.AsyncClient(
                timeout=timeout,
                limits=httpx.Limits(
                    max_connections=512, max_keepalive_connections=128, keepalive_expiry=60
                ),
                follow_redirects=False,
                trust_env=True,  # corporate proxies for the provider, NO_PROXY respected
            )
            self._clients[provider] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def send(
        self,
        flow: Flow,
        pipeline: Pipeline,
        *,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes,
    ) -> UpstreamResponse:
        """Send with retries: after each try the policies decide whether and when to retry.

        Nothing has reached the agent yet, so retrying is safe; a response is committed
        (returned) as soon as a try is not retried.
        """
        client = self.client(flow.provider)
        number = 0
        while True:
            number += 1
            began = time.monotonic()
            try:
                request = client.build_request(method, url, headers=headers, content=content)
                resp = await client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                # Connect and pool timeouts: the request never left, a retry cannot double-bill.
                kind = (
                    "connect"
                    if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
                    else "timeout"
                )
                attempt = Attempt(number, failure=kind, elapsed=time.monotonic() - began)
                delay = pipeline.upstream_attempt(flow, attempt)
                if delay is None:
                    raise UpstreamUnavailable(kind, _describe(exc, url)) from None
                await anyio.sleep(delay)
                continue
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.NetworkError) as exc:
                kind = "connect" if isinstance(exc, httpx.ConnectError) else "protocol"
                attempt = Attempt(number, failure=kind, elapsed=time.monotonic() - began)
                delay = pipeline.upstream_attempt(flow, attempt)
                if delay is None:
                    raise UpstreamUnavailable(kind, _describe(exc, url)) from None
                await anyio.sleep(delay)
                continue
            attempt = Attempt(
                number,
                status=resp.status_code,
                retry_after=retry_after_seconds(resp.headers),
                elapsed=time.monotonic() - began,
            )
            delay = pipeline.upstream_attempt(flow, attempt)
            if delay is None:
                ctype = resp.headers.get("content-type", "")
                return UpstreamResponse(resp.status_code, response_headers(resp), ctype, resp)
            await resp.aclose()
            await anyio.sleep(delay)


def offline(flow: Flow, path: str) -> UpstreamResponse:
    reply: Any = offline_response(flow.provider, flow.endpoint, flow.body or {}, path=path)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    ctype = reply.headers.get("content-type", "application/json")
    chunks = list(reply.events) if reply.events is not None else [reply.body]
    return UpstreamResponse(reply.status, headers, ctype, None, chunks)


def _describe(exc: Exception, url: str) -> str:
    host = httpx.URL(url).host
    detail = str(exc) or type(exc).__name__
    return f"{type(exc).__name__} reaching {host}: {detail}"
