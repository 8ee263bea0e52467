"""Where a daemon's call goes: the provider's base URL, with the real key swapped in for
the agent's IC_TOKEN (library mode overrides this: its calls go where the SDK's client
was going, with the client's own key)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ironrt.providers.base import ProviderAdapter
from ironrt.router.counting import Sender, offline_sender
from ironrt.transports.http import Upstream, skipped_bytes

_ENCODE = msgspec.json.encode


@dataclass(slots=True)
class RouterConfig:
    offline: bool
    base_urls: dict[str, str | None]
    keys: Callable[[str], tuple[str, str] | None]
    #: Collect each completion's text as the provider sent it (`Flow.output_texts`, before
    #: the response policies restore or redact): set by the daemon only when spans carry
    #: message content (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`).
    capture_completions: bool = False


def upstream_lines(
    adapter: ProviderAdapter, raw: list[tuple[bytes, bytes]], found: tuple[str, str]
) -> bytes:
    """The agent's headers fit to go upstream, as the header lines that go: its IC_TOKEN's
    headers and the hop-by-hop ones dropped, the real key's added, no compression asked
    for. From the headers as they came (names lower case, values as sent): nothing is
    decoded and encoded back."""
    skip = skipped_bytes(adapter.auth_headers)
    kept = b"".join([b"%b: %b\r\n" % pair for pair in raw if pair[0] not in skip])
    return kept + _IDENTITY + _auth_lines(adapter, *found)


class MalformedKey(ValueError):
    """The provider key holds a CR or LF: it cannot go in a header (the message names
    where the key came from, never the key)."""


_IDENTITY = b"accept-encoding: identity\r\n"
_JSON = {"content-type": "application/json"}  # usage is read from the body: no compression


@functools.lru_cache(maxsize=64)
def _auth_lines(adapter: ProviderAdapter, env_name: str, key: str) -> bytes:
    """The provider's auth header lines with `key`, made once a key. A key with a CR or
    LF would split them into lines of its choosing: refused, naming the header only."""
    headers = adapter.upstream_auth_headers(key, env_name)
    if any("\r" in k + v or "\n" in k + v for k, v in headers.items()):
        raise MalformedKey(
            f"ironrt's {adapter.name} API key ({env_name}) holds a line break, so it cannot "
            "be sent: set it again without one (then `ironrt daemon stop`; the next "
            "command restarts the daemon)"
        )
    text = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def count_sender(
    config: RouterConfig, upstream: Upstream, adapter: ProviderAdapter, headers: Mapping[str, str]
) -> Sender:
    """How the budget asks the provider for an exact input count: the agent's own headers
    (beta flags, versions) with the real key, or the offline provider."""
    if config.offline:
        return offline_sender(adapter.name)
    found = config.keys(adapter.name)
    base = config.base_urls.get(adapter.name)

    async def send(path: str, payload: dict[str, Any]) -> tuple[int, Any] | None:
        if found is None:
            return None
        raw = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in headers.items()
            if k != "content-type"
        ]
        try:
            lines = upstream_lines(adapter, raw, found)
        except MalformedKey:  # unknown here; the call itself is answered with the reason
            return None
        url = adapter.upstream_url(path, base)
        return await upstream.post_json(adapter.name, url, _JSON, _ENCODE(payload), lines)

    return send
