"""Server-sent events the providers layer writes itself: the delta events a policy's
held-back text goes out in (`ProviderAdapter.text_event`) and the offline provider's
streams. Parsing the upstream's events is the router's job (`ironrt.router.sse`); only
encoding lives here, so that providers never import the router above them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ironrt.governance.flow import StreamEvent

__all__ = ["make_event", "sse_bytes"]

_ENCODE = msgspec.json.encode


def sse_bytes(data: Any, event: str | None = None) -> bytes:
    """Encode one event: an optional `event:` line, one `data:` line of JSON, a blank line.

    JSON from msgspec never holds a raw newline, so one `data:` line always suffices.
    """
    body = b"data: " + _ENCODE(data) + b"\n\n"
    if event:
        return b"event: " + event.encode() + b"\n" + body
    return body


def make_event(data: Any, event: str | None = None) -> StreamEvent:
    """A new, already encoded event (`changed=False`: its `raw` is what goes out)."""
    return StreamEvent(raw=sse_bytes(data, event), event=event, data=data)
