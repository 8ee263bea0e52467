"""The offline provider as a transport: answers as OpenAI and Anthropic would, computed
from the request, with no network and no key (`IRONRT_OFFLINE=1`, `ironrt demo`).

It sits behind the same interface as the HTTP transport, so an offline run exercises the
very code paths (retries and breaker accounting, streaming, usage, pricing, policies) a
real provider does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ironrt.governance.flow import Flow
from ironrt.providers.offline import offline_response
from ironrt.transports.base import Answer, Outgoing
from ironrt.transports.http import response_headers


@dataclass(slots=True)
class StoredAnswer:
    """An answer whose bytes are already in memory (the offline provider's, or a body
    library mode read whole)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    content_type: str
    chunks: list[bytes] = field(default_factory=list)
    retry_after: float | None = None

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    async def read(self) -> bytes:
        return b"".join(self.chunks)

    async def aclose(self) -> None:
        return None


class OfflineTransport:
    async def attempt(self, flow: Flow, request: Outgoing) -> Answer:
        path = request.url.split("?", 1)[0]
        reply: Any = offline_response(flow.provider, flow.endpoint, flow.body or {}, path=path)
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
        headers, _ = response_headers(raw)  # fit to relay, as `Answer.headers` must be
        ctype = reply.headers.get("content-type", "application/json")
        chunks = list(reply.events) if reply.events is not None else [reply.body]
        return StoredAnswer(reply.status, headers, ctype, chunks)
