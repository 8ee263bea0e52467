"""Incremental server-sent-events parsing and encoding for the router's stream path.

The router sits between an upstream SSE stream and the agent's SDK and must forward every
event as soon as it is complete, byte for byte when no policy touched it. So the parser
keeps each event's exact `raw` bytes (terminator included): concatenating the `raw` of
all events returned by `feed` and `flush` gives back exactly the bytes fed in. Only a
changed event is re-encoded (`encode_event`).

It runs on every chunk of every stream, so the scanning is done by `re` and `bytes`
methods in C; Python only loops per event and per line of an event, never per byte, and a
partial event is never rescanned from its start.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ironrt.governance.flow import StreamEvent
from ironrt.providers.events import make_event, sse_bytes

__all__ = ["EventTooLarge", "SSEParser", "encode_event", "make_event", "sse_bytes"]

#: One event larger than this is no provider's: the stream is cut (and the call settled
#: with the error) rather than buffered without end. A Responses API `.done` event repeats
#: a whole answer: even a 128k-token one is well under 2 MiB.
MAX_EVENT_BYTES = 32 * 1024 * 1024


class EventTooLarge(Exception):
    """The upstream sent more than MAX_EVENT_BYTES without ending an event."""


# An event ends at an empty line: two line terminators in a row, each one of \r\n, \n, \r
# (a \r followed by \n is one terminator, never two). A lone \r at the very end of the
# buffered bytes counts as a terminator, so an event is never held back waiting to see
# whether a \n follows; if one does, it becomes a leading blank line of the next event's
# `raw`, which keeps the bytes identical and parses the same.
_BLANK_LINE = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))")
_DECODER = msgspec.json.Decoder()
_DONE = b"[DONE]"


def _parse(raw: bytes) -> StreamEvent:
    """Build a `StreamEvent` from one complete event's bytes."""
    # What nearly every provider event is: one `data: ` line, then the blank line.
    if raw.startswith(b"data: ") and raw.endswith(b"\n\n"):
        payload = raw[6:-2]
        if b"\n" not in payload and b"\r" not in payload:
            data: Any = None
            if payload and payload != _DONE:
                try:
                    data = _DECODER.decode(payload)
                except msgspec.DecodeError:
                    data = None
            return StreamEvent(raw, None, data)
    event: str | None = None
    data_lines: list[bytes] = []
    for line in raw.splitlines():
        if line.startswith(b"data"):
            if line.startswith(b"data:"):
                value = line[5:]
                data_lines.append(value[1:] if value.startswith(b" ") else value)
            elif line == b"data":
                data_lines.append(b"")
        elif line.startswith(b"event:"):
            value = line[6:]
            event = (value[1:] if value.startswith(b" ") else value).decode("utf-8", "replace")
    data = None
    if data_lines:
        payload = data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines)
        if payload and payload != _DONE:
            try:
                data = _DECODER.decode(payload)
            except msgspec.DecodeError:
                data = None
    return StreamEvent(raw=raw, event=event or None, data=data)


class SSEParser:
    """Split a byte stream into server-sent events, keeping each event's exact bytes.

    `feed` returns the events completed by a chunk (possibly none); `flush` returns a last
    event that arrived without its terminating blank line. A comment-only event (`: ping`)
    or stray blank line comes back as an event with `data=None`, so nothing is lost.
    """

    __slots__ = ("_buf", "_scan")

    def __init__(self) -> None:
        # A bytearray, so a large event arriving in many chunks is appended in amortized
        # constant time instead of being copied whole on every chunk.
        self._buf = bytearray()
        # Where the next search for a blank line starts: a terminator can straddle chunks,
        # so the search backs up a few bytes, never to the start of a long partial event.
        self._scan = 0

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        if not chunk:
            return []
        buf = self._buf
        if not buf and type(chunk) is bytes and b"\r" not in chunk:
            # Nothing pending and only \n line ends (what providers send): an event ends
            # at the first "\n\n", found by `bytes.find`, and a chunk holding exactly one
            # event becomes its `raw` without a copy (a whole slice of bytes is itself).
            return self._feed_lf(chunk)
        buf += chunk
        events: list[StreamEvent] = []
        start = 0
        pos = self._scan
        while (match := _BLANK_LINE.search(buf, pos)) is not None:
            pos = match.end()
            events.append(_parse(bytes(buf[start:pos])))
            start = pos
        if start:
            del buf[:start]
        if len(buf) > MAX_EVENT_BYTES:
            buf.clear()
            self._scan = 0
            raise EventTooLarge(f"an upstream stream event exceeds {MAX_EVENT_BYTES} bytes")
        self._scan = max(0, len(buf) - 3)
        return events

    def _feed_lf(self, chunk: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        start = 0
        while (end := chunk.find(b"\n\n", start)) != -1:
            end += 2
            events.append(_parse(chunk[start:end]))
            start = end
        if start < len(chunk):
            rest = chunk[start:]
            if len(rest) > MAX_EVENT_BYTES:
                raise EventTooLarge(f"an upstream stream event exceeds {MAX_EVENT_BYTES} bytes")
            self._buf += rest
            self._scan = max(0, len(rest) - 3)
        return events

    def flush(self) -> list[StreamEvent]:
        """Return what is left as a final event (a stream that ended without a blank line)."""
        raw = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        return [_parse(raw)] if raw else []


def encode_event(ev: StreamEvent) -> bytes:
    """The bytes to send for `ev`: its `raw` if unchanged, a fresh encoding otherwise.

    An event whose payload is not JSON (`[DONE]`, a comment) cannot have been edited
    through `data`, so it always goes out as received.
    """
    if not ev.changed or ev.data is None:
        return ev.raw
    return sse_bytes(ev.data, ev.event)
