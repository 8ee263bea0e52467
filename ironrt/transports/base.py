"""The one interface every way of reaching a provider implements.

A transport makes ONE try: it sends an `Outgoing` request and returns an `Answer` (any
HTTP status), or raises `AttemptFailed` when no answer came ("connect": nothing was sent,
"timeout", "protocol": sent, maybe billed). Retrying is not its business: `retrying.py`
runs the one retry loop over any transport, asking the policies after each try.

Three transports exist: `http` (the daemon's keep-alive pool, `ironrt.wire`), `offline` (the
built-in offline provider, no network) and library mode's (the SDK's own HTTP client,
in `ironrt.library`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from ironrt.governance.flow import Flow


@dataclass(slots=True)
class Outgoing:
    """A request as it goes to the provider: real URL, real credentials."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes
    #: Header lines already encoded (`name: value\r\n` each, checked: no CR or LF inside
    #: a line), sent after `headers`: the daemon forwards the agent's headers as the bytes
    #: that came in (`router.egress.upstream_lines`). Only the daemon's transport reads it.
    lines: bytes = b""


class AttemptFailed(Exception):
    """No HTTP answer: `kind` is "connect" (never sent: free to retry), "timeout" or
    "protocol" (sent: maybe billed)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Answer(Protocol):
    """The provider's answer to one try, its body not read yet."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The headers fit to relay as they are: names lower case, none holding a control
        character, none of the hop-by-hop or framing ones (`http.response_headers` makes
        them so; the router's server does not check them again)."""
        ...

    @property
    def content_type(self) -> str: ...

    #: The provider's Retry-After (or retry-after-ms), in seconds.
    @property
    def retry_after(self) -> float | None: ...

    def iter_bytes(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    async def aclose(self) -> None:
        """Release the answer. It completes even if its caller is being cancelled: an
        implementation that awaits shields itself (the pooled and in-memory answers
        never suspend, so callers need no shield of their own, ~5 µs a call)."""
        ...


class Transport(Protocol):
    async def attempt(self, flow: Flow, request: Outgoing) -> Answer: ...
