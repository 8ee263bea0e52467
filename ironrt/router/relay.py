"""Relaying the provider's answer to the agent, through the policies on the way back.

A whole body is decoded once (for its usage alone if it holds no text), read for usage,
offered to the policies and re-encoded only if one changed it, off the event loop when
it is large (bodies.py). A stream is relayed event by event as it arrives (never buffered
whole): usage is read from its events, the usage-only chunk the router asked for is
dropped, and what the policies hold back is flushed before the event that closes its
channel. If the agent hangs up mid-stream, the upstream is still read (bounded) to learn
what the call cost.

A call is settled (priced, its hold turned into spend, its trace and spend committed)
*before* the agent receives the end of its answer: the whole body, or a stream's closing
event (`ProviderAdapter.closes_answer`: `[DONE]`, `message_stop`, `response.completed`).
A daemon killed at any moment therefore never leaves an answered call without its cost
on disk. The price is one group commit on the way out (bench/router.py measures it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import msgspec

from ironrt.governance.flow import Flow, StreamEvent, TextSlot, TokenUsage
from ironrt.governance.pipeline import Pipeline, PolicyFailed
from ironrt.providers.base import adapter_of
from ironrt.router.bodies import OFFLOAD_BYTES, decode_json, decode_usage, encode_json
from ironrt.router.responses import NO_RETRY, send_error, send_policy_error
from ironrt.router.sse import SSEParser, encode_event
from ironrt.transports.base import Answer
from ironrt.transports.http import error_kind

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Settle = Callable[[Flow], Awaitable[None]]

#: After the agent hung up mid-stream, keep reading the upstream this long for its usage.
DRAIN_AFTER_DISCONNECT_S = 30.0
_DECODE = msgspec.json.Decoder()


async def relay_body(
    flow: Flow, upstream: Answer, send: Send, pipeline: Pipeline, settle: Settle
) -> None:
    adapter = adapter_of(flow)
    flow.upstream_status = upstream.status
    began = time.monotonic()
    try:
        data = await upstream.read()
    except Exception as exc:  # the upstream broke mid-body: sent, maybe billed
        flow.upstream_s += time.monotonic() - began
        flow.status_code, flow.error = 502, f"upstream body: {error_kind(exc)}"
        flow.upstream_failure = "protocol"
        await settle(flow)
        await send_error(
            send,
            adapter,
            502,
            "ironrt router: the upstream response broke off",
            "api_error",
            "upstream_broken",
            retry=False,
        )
        return
    flow.status_code = upstream.status
    flow.ttfb = time.monotonic()
    flow.upstream_s += flow.ttfb - began  # reading the body is the upstream's time
    headers = list(upstream.headers)
    if upstream.status < 300 and "json" in upstream.content_type and flow.endpoint != "unmetered":
        whole = adapter.response_has_text(flow.endpoint)
        # A body without text is read for its usage alone (embeddings: megabytes of floats).
        parsed = await decode_json(data) if whole else await decode_usage(data)
        if parsed is not None:
            flow.usage = adapter.usage_from_response(flow.endpoint, parsed)
            if isinstance(parsed, dict) and isinstance(parsed.get("model"), str):
                flow.response_model = parsed["model"]
            try:
                # Policies see the body through the adapter's text slots: a body read for
                # its usage alone has none, and is never re-encoded in place of the whole.
                if capture_completions and whole:
                    _capture(flow, flow.response_texts(parsed))
                if await pipeline.response(flow, parsed) and whole:
                    data = await encode_json(parsed, len(data))
            except PolicyFailed as exc:
                flow.status_code, flow.error = 500, str(exc)
                await settle(flow)
                await send_policy_error(send, adapter, exc.policy)
                return
    elif upstream.status >= 400:
        flow.error = _error_text(data)
        if flow.retry is not None and flow.retry.gave_up:
            headers.append(NO_RETRY)
    headers.append((b"content-length", str(len(data)).encode()))
    await settle(flow)
    if flow.failed_policy is not None:  # a `complete` hook raised: fail closed
        await send_policy_error(send, adapter, flow.failed_policy)
        return
    await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
    flow.committed = True


async def relay_stream(
    flow: Flow,
    upstream: Answer,
    receive: Receive,
    send: Send,
    pipeline: Pipeline,
    drop_usage: bool,
    settle: Settle,
) -> None:
    adapter = adapter_of(flow)
    flow.status_code = flow.upstream_status = upstream.status
    headers = list(upstream.headers)
    await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
    flow.committed = True
    parser = SSEParser()
    usage = TokenUsage()
    saw_usage = False
    stream_model = ""
    gone = anyio.Event()
    #: The closing event and whatever follows it: sent once the call is settled.
    closing: list[StreamEvent] = []

    async def watch_client() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                return

    async def emit(events: list[StreamEvent]) -> None:
        if closing:
            closing.extend(events)
            return
        for i, ev in enumerate(events):
            if adapter.closes_answer(flow.endpoint, ev):
                closing.extend(events[i:])
                events = events[:i]
                break
        if gone.is_set() or not events:
            return
        out = b"".join(encode_event(ev) if ev.changed else ev.raw for ev in events)
        await send({"type": "http.response.body", "body": out, "more_body": True})

    def account() -> None:
        if saw_usage:
            flow.usage = usage
        if stream_model:
            flow.response_model = stream_model

    async def finish(events: list[StreamEvent]) -> None:
        """Settle, then send what was held back: the agent sees the end after the books."""
        account()
        await settle(flow)
        if flow.failed_policy is not None:  # a `complete` hook raised: fail closed
            raise PolicyFailed(flow.failed_policy, RuntimeError("complete"))
        if gone.is_set() or not events:
            return
        out = b"".join(encode_event(ev) if ev.changed else ev.raw for ev in events)
        await send({"type": "http.response.body", "body": out, "more_body": True})

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_client)
        try:
            with anyio.CancelScope() as drain_scope:
                async for chunk in _timed(flow, upstream.iter_bytes()):
                    if flow.ttfb is None:
                        flow.ttfb = time.monotonic()
                    out: list[StreamEvent] = []
                    for ev in parser.feed(chunk):
                        if ev.data is not None:
                            if adapter.usage_from_event(flow.endpoint, ev, usage):
                                saw_usage = True
                            if not stream_model:
                                stream_model = adapter.stream_model(flow.endpoint, ev) or ""
                            if drop_usage and adapter.is_usage_only_chunk(flow.endpoint, ev):
                                continue
                            if capture_completions:
                                _capture(flow, flow.event_texts(ev))
                        out.extend(await pipeline.stream_event(flow, ev))
                    await emit(out)
                    if gone.is_set() and drain_scope.deadline == float("inf"):
                        # The agent hung up: keep reading (bounded) only to learn the usage.
                        drain_scope.deadline = anyio.current_time() + DRAIN_AFTER_DISCONNECT_S
                tail = parser.flush()
                out = []
                for ev in tail:
                    if ev.data is not None and adapter.usage_from_event(flow.endpoint, ev, usage):
                        saw_usage = True
                    out.extend(await pipeline.stream_event(flow, ev))
                out.extend(pipeline.stream_end(flow))
                await emit(out)
            if drain_scope.cancelled_caught:
                flow.error = "client disconnected; upstream usage not received in time"
            if gone.is_set() and flow.error is None:
                flow.error = "client disconnected mid-stream"
            await finish(closing)
        except PolicyFailed as exc:
            flow.error = str(exc)
            account()
            await settle(flow)
            await _stream_error(
                send, flow, f"ironrt router: {exc}; stream ended", gone, "policy_error"
            )
        except Exception as exc:  # upstream broke or stalled mid-stream
            kind = error_kind(exc)
            flow.error = f"stream interrupted: {kind}: {exc}"[:500]
            account()
            await settle(flow)
            await _stream_error(
                send,
                flow,
                f"ironrt router: the upstream stream stalled or broke off ({kind})",
                gone,
            )
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b""})
        tg.cancel_scope.cancel()


async def _timed(flow: Flow, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The upstream's chunks, the time spent awaiting each one counted as the upstream's
    (`flow.upstream_s`): what is left of the latency is the router's own time."""
    it = aiter(chunks)
    while True:
        began = time.monotonic()
        try:
            chunk = await anext(it)
        except StopAsyncIteration:
            return
        finally:
            flow.upstream_s += time.monotonic() - began
        yield chunk


# ---- message content for telemetry (ironrt.observe.otel_content) ------------------------

#: Set once by the daemon when spans carry message content
#: (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`): only then are completions
#: collected, as the provider sent them (before the response policies restore or redact).
capture_completions = False
#: The most pieces of completion text kept per call (stream deltas are small).
_CAPTURE_MAX_PIECES = 4096


def _capture(flow: Flow, slots: list[TextSlot]) -> None:
    texts = flow.output_texts
    if texts is None:
        texts = flow.output_texts = []
    for slot in slots:
        if slot.where == "completion" and len(texts) < _CAPTURE_MAX_PIECES:
            texts.append(slot.text)


async def _stream_error(
    send: Send, flow: Flow, message: str, gone: anyio.Event, code: str | None = None
) -> None:
    if gone.is_set():
        return
    await send(
        {
            "type": "http.response.body",
            "body": adapter_of(flow).stream_error_event(message, "api_error", code),
            "more_body": True,
        }
    )


def _error_text(data: bytes) -> str:
    if len(data) > OFFLOAD_BYTES:  # no provider error is this long: not worth the loop
        return data[:300].decode("utf-8", "replace")
    try:
        parsed = _DECODE.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return data[:300].decode("utf-8", "replace")
    if isinstance(parsed, dict):
        err = parsed.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:300]
    return data[:300].decode("utf-8", "replace")
