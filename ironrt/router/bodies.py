"""JSON bodies in and out of the router: decoded, checked and encoded in one place, off
the event loop when they are large.

Every agent's calls share one event loop, so a step that holds it holds them all. Bodies
above `OFFLOAD_BYTES` are decoded, shape-checked and measured (`parse_request`),
re-encoded (`encode_json`) and, on the way back, decoded (`decode_json`, `decode_usage`)
in a worker thread; smaller ones inline, where the thread hop (~0.1 ms) costs more than
the work (msgspec: 2-4 ms per MiB).

What the thread buys is bounded by the GIL, which msgspec holds for the whole of one
call: the loop still waits out the longest single call (the decode), but no longer the
sum of the steps, and the Python-level steps between calls yield to it every switch
interval (5 ms). Measured on a loaded 2-core machine, 14 MiB bodies, decode + check +
re-encode: one 14 MiB prompt string stalled the loop 44-51 ms inline and 14-24 ms off
the loop; 6,000 messages of 2 KiB stalled it ~50 ms either way (the decode of that many
objects is one long call). Splitting a decode into smaller calls (msgspec `Raw` members)
was measured too and rejected: four times the CPU, and about the same stall, because
finding the members of a string-heavy body costs what decoding it does. A response the
router reads only for its usage (embeddings: megabytes of floats) is decoded for `usage`
and `model` alone (`decode_usage`: a quarter of the time of a whole decode).

Nothing else touches a body while its owner awaits the worker, so sharing it is safe.

A request body the router cannot read is refused here, never half-read later: not JSON,
not an object, nested deeper than the decoder's recursion limit, or a field of a type the
adapter's `request_shapes` says the router cannot walk (`BadBody`, a 400 naming the
field). Past `parse_request`, the adapters and policies may take those types for granted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import msgspec

from ironrt.governance.flow import Endpoint
from ironrt.providers.base import ProviderAdapter

__all__ = [
    "OFFLOAD_BYTES",
    "BadBody",
    "ParsedRequest",
    "decode_json",
    "decode_usage",
    "encode_json",
    "parse_request",
    "parse_request_off_loop",
]

#: Bodies larger than this are decoded and encoded in a worker thread.
OFFLOAD_BYTES = 256 * 1024
_DECODE = msgspec.json.Decoder()
_ENCODE = msgspec.json.encode


class _UsageOnly(msgspec.Struct):
    """The fields of a response body the router reads when it holds no text."""

    usage: Any = None
    model: Any = None


_DECODE_USAGE = msgspec.json.Decoder(_UsageOnly)


class BadBody(Exception):
    """A request body the router will not read: answered 400, never forwarded."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


@dataclass(slots=True)
class ParsedRequest:
    """What the router learns from a request body before any policy sees it."""

    body: dict[str, Any]
    model: str
    stream: bool
    #: The adapter's upper bound of the input tokens (see `input_token_bound`).
    input_bound: int


def parse_request(adapter: ProviderAdapter, endpoint: Endpoint, raw: bytes) -> ParsedRequest:
    """Decode, check and measure a request body (pure: safe in a worker thread)."""
    try:
        decoded = _DECODE.decode(raw)
    except msgspec.DecodeError as exc:
        raise BadBody(f"ironrt router: malformed JSON body: {exc}", "invalid_json") from None
    except RecursionError:
        raise BadBody("ironrt router: the JSON body is nested too deeply", "invalid_json") from None
    if not isinstance(decoded, dict):
        raise BadBody("ironrt router: the JSON body must be an object", "invalid_json")
    problem = adapter.request_problem(endpoint, decoded)
    if problem is not None:
        raise BadBody(problem.message, "invalid_type", problem.param)
    return ParsedRequest(
        body=decoded,
        model=adapter.request_model(endpoint, decoded),
        stream=adapter.is_stream(endpoint, decoded),
        input_bound=adapter.input_token_bound(endpoint, decoded, len(raw)),
    )


async def parse_request_off_loop(
    adapter: ProviderAdapter, endpoint: Endpoint, raw: bytes
) -> ParsedRequest:
    """`parse_request`, in a worker thread when the body is large."""
    if len(raw) > OFFLOAD_BYTES:
        return await anyio.to_thread.run_sync(parse_request, adapter, endpoint, raw)
    return parse_request(adapter, endpoint, raw)


async def encode_json(value: Any, size_hint: int) -> bytes:
    """`value` as JSON; in a worker thread when `size_hint` (the bytes it was decoded
    from) says it is large. A value nested too deeply to encode raises RecursionError."""
    if size_hint > OFFLOAD_BYTES:
        return await anyio.to_thread.run_sync(_ENCODE, value)
    return _ENCODE(value)


async def decode_json(data: bytes) -> Any:
    """Decoded JSON, or None if `data` is not JSON (or nested too deeply to decode)."""
    try:
        if len(data) > OFFLOAD_BYTES:
            return await anyio.to_thread.run_sync(_DECODE.decode, data)
        return _DECODE.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None


def _usage_of(data: bytes) -> dict[str, Any] | None:
    try:
        found = _DECODE_USAGE.decode(data)
    except (msgspec.DecodeError, RecursionError):  # not JSON, or not an object
        return None
    return {"usage": found.usage, "model": found.model}


async def decode_usage(data: bytes) -> dict[str, Any] | None:
    """Only `usage` and `model` of a JSON object (None if `data` is not one): for a
    response whose other fields the router never reads."""
    if len(data) > OFFLOAD_BYTES:
        return await anyio.to_thread.run_sync(_usage_of, data)
    return _usage_of(data)
