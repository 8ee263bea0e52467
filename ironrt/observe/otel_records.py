"""What the daemon hands its OpenTelemetry export worker: one record per settled call and
one per ended agent run, in length-prefixed msgpack frames over the worker's stdin.

Defined once, used on both sides (`otel.py` writes, `otel_worker.py` reads). The records
carry what a span and the GenAI metrics need and nothing else: never a header, a key or
an IC_TOKEN; message content only when capture is on (already bounded and redacted).
"""

from __future__ import annotations

import hashlib
import struct

import msgspec

__all__ = [
    "CallRecord",
    "Record",
    "RunRecord",
    "frame",
    "read_frame",
    "run_ids",
]


class RunRecord(msgspec.Struct, tag="run", array_like=True, frozen=True):
    """One agent run (one process lifetime) that ended, or was still running when the
    daemon stopped: exported as the `invoke_agent {name}` span its calls are children of."""

    agent_id: str
    pid: int
    #: The process's start time (Unix seconds, as the supervisor recorded it): with the
    #: agent id and pid it names the run, so the ids survive a daemon restart.
    started_s: float
    ended_s: float
    name: str
    project: str | None


class CallRecord(msgspec.Struct, tag="call", array_like=True, frozen=True):
    """One settled LLM call (a `Trace` and what the flow knew), as its span needs it."""

    agent_id: str
    agent_name: str
    project: str | None
    #: The agent's run: pid and process start time (None: no run known, the span is a root).
    pid: int | None
    run_started_s: float | None
    provider: str
    endpoint: str
    request_model: str
    response_model: str
    stream: bool
    status_code: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    #: Token counts are only recorded (metrics) when the provider reported usage.
    has_usage: bool
    cost_usd: float | None
    start_ns: int
    end_ns: int
    ttfb_s: float | None
    overhead_ms: float | None
    refusal: str | None
    error_type: str | None
    error: str | None
    server_address: str | None
    server_port: int | None
    #: `gen_ai.input.messages` / `gen_ai.system_instructions` / `gen_ai.output.messages`
    #: as JSON text (capture on and the call reached a provider), else None.
    input_messages: str | None = None
    system_instructions: str | None = None
    output_messages: str | None = None


Record = CallRecord | RunRecord

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[Record])
_LENGTH = struct.Struct(">I")


def frame(records: list[Record]) -> bytes:
    """A batch of records as one frame: a 4-byte big-endian length, then msgpack."""
    payload = _ENCODER.encode(records)
    return _LENGTH.pack(len(payload)) + payload


def read_frame(read: object) -> list[Record] | None:
    """The next frame from `read(n)` (a binary stream's read); None at end of input."""
    assert callable(read)
    head = _read_exactly(read, _LENGTH.size)
    if head is None:
        return None
    (size,) = _LENGTH.unpack(head)
    payload = _read_exactly(read, size)
    if payload is None:
        return None
    return _DECODER.decode(payload)


def _read_exactly(read: object, n: int) -> bytes | None:
    assert callable(read)
    parts: list[bytes] = []
    left = n
    while left:
        chunk = read(left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def run_ids(agent_id: str, pid: int, started_s: float) -> tuple[int, int]:
    """The run's trace id (128 bits) and span id (64 bits), derived from what names the
    run, so a daemon that restarts while the agent runs on parents its calls the same."""
    digest = hashlib.sha256(f"{agent_id}\0{pid}\0{started_s:.3f}".encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id
