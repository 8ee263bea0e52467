"""Relaying the provider's answer to the agent, through the policies on the way back.

A whole body is decoded once (for its usage alone if it holds no text), read for usage,
offered to the policies and re-encoded only if one changed it, off the event loop when
it is large (bodies.py). A stream is relayed event by event as it arrives (never buffered
whole): usage is read from its events, the usage-only chunk the router asked for is
dropped, and what the policies hold back is flushed before the event that closes its
channel. If the agent hangs up mid-stream, the upstream is still read (bounded) to learn
what the call cost.

A call is settled (priced, its hold turned into spend, its trace and spend made durable)
*before* the agent receives the end of its answer: the whole body, or a stream's closing
event (`ProviderAdapter.closes_answer`: `[DONE]`, `message_stop`, `response.completed`).
A daemon killed at any moment therefore never leaves an answered call without its cost
on disk. The price is one journal append on the way out (`ironrt.store.books`; SQLite
is committed behind the answers; bench/router.py measures both).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import anyio
import msgspec

from ironrt.governance.flow import Flow, StreamEvent, TextSlot, TokenUsage
from ironrt.governance.pipeline import Pipeline, PolicyFailed
from ironrt.providers.base import adapter_of
from ironrt.router.bodies import OFFLOAD_BYTES, decode_json, decode_usage, encode_json
from ironrt.router.exchange import Exchange
from ironrt.router.responses import NO_RETRY, send_error, send_policy_error
from ironrt.router.sse import SSEParser, encode_event
from ironrt.transports.base import Answer
from ironrt.transports.http import error_kind

Settle = Callable[[Flow], Awaitable[None]]

#: After the agent hung up mid-stream, keep reading the upstream this long for its usage.
DRAIN_AFTER_DISCONNECT_S = 30.0
_DECODE = msgspec.json.Decoder()


async def relay_body(
    flow: Flow,
    upstream: Answer,
    x: Exchange,
    pipeline: Pipeline,
    settle: Settle,
    *,
    capture: bool = False,
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
            x,
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
        flow.reply_size = len(data)
        if parsed is not None:
            flow.usage = adapter.usage_from_response(flow.endpoint, parsed)
            if isinstance(parsed, dict) and isinstance(parsed.get("model"), str):
                flow.response_model = parsed["model"]
            try:
                # Policies see the body through the adapter's text slots: a body read for
                # its usage alone has none, and is never re-encoded in place of the whole.
                if capture and whole:
                    _capture(flow, flow.response_texts(parsed))
                if await pipeline.response(flow, parsed) and whole:
                    data = await encode_json(parsed, len(data))
            except PolicyFailed as exc:
                flow.status_code, flow.error = 500, str(exc)
                await settle(flow)
                await send_policy_error(x, adapter, exc.policy)
                return
    elif upstream.status >= 400:
        flow.error = _error_text(data)
        if flow.retry is not None and flow.retry.gave_up:
            headers.append(NO_RETRY)
    headers.append((b"content-length", str(len(data)).encode()))
    await settle(flow)
    if flow.failed_policy is not None:  # a `complete` hook raised: fail closed
        await send_policy_error(x, adapter, flow.failed_policy)
        return
    await x.answer(upstream.status, headers, data, fit=True)  # `Answer.headers` are
    flow.committed = True


async def relay_stream(
    flow: Flow,
    upstream: Answer,
    x: Exchange,
    pipeline: Pipeline,
    drop_usage: bool,
    settle: Settle,
    *,
    capture: bool = False,
) -> None:
    """Relay a stream event by event: one `write` per upstream chunk, never waiting for
    more (what a chunk completes goes out before the next chunk is awaited)."""
    adapter = adapter_of(flow)
    # The per-event questions go straight to the endpoint's surface (one lookup a call).
    surface = adapter.surface(flow.endpoint)
    usage_from_event = surface.usage_from_event
    stream_model = surface.stream_model
    is_usage_only = surface.is_usage_only_chunk
    closes_answer = surface.closes_answer
    stream_event = pipeline.stream_event
    flow.status_code = flow.upstream_status = upstream.status
    headers = list(upstream.headers)
    await x.start(upstream.status, headers, fit=True)
    flow.committed = True
    parser = SSEParser()
    usage = TokenUsage()
    saw_usage = False
    model = ""
    #: The closing event and whatever follows it: sent once the call is settled.
    closing: list[StreamEvent] = []
    #: What goes out with the end of the body: the closing events, or an error event.
    tail = b""
    # Done once the agent hung up. A bare asyncio task, not an anyio task group: starting
    # and cancelling the group took five event-loop turns a call (relay_stream alone, a
    # 6-event stream, in process: 0.25 ms of CPU a call with the group, 0.10 ms with the
    # task), and the router and library mode both run on asyncio.
    hangup = asyncio.get_running_loop().create_task(x.hung_up())
    gone = hangup.done

    def account() -> None:
        if saw_usage:
            flow.usage = usage
        if model:
            flow.response_model = model

    def held(events: list[StreamEvent]) -> list[StreamEvent]:
        """`events` up to the closing one; it and what follows it join `closing`."""
        if closing:
            closing.extend(events)
            return []
        for i, ev in enumerate(events):
            if closes_answer(ev):
                closing.extend(events[i:])
                return events[:i]
        return events

    try:
        with anyio.CancelScope() as drain_scope:
            chunks = aiter(upstream.iter_bytes())
            while True:
                # The wait for each chunk is the upstream's time (`flow.upstream_s`): what
                # is left of the latency is the router's own.
                began = time.monotonic()
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                finally:
                    flow.upstream_s += time.monotonic() - began
                if flow.ttfb is None:
                    flow.ttfb = time.monotonic()
                out: list[StreamEvent] = []
                for ev in parser.feed(chunk):
                    if ev.data is not None:
                        if usage_from_event(ev, usage):
                            saw_usage = True
                        if not model:
                            model = stream_model(ev) or ""
                        if drop_usage and is_usage_only(ev):
                            continue
                        if capture:
                            _capture(flow, flow.event_texts(ev))
                    out += await stream_event(flow, ev)
                if gone():
                    if drain_scope.deadline == math.inf:
                        # The agent hung up: keep reading (bounded) only to learn the usage.
                        drain_scope.deadline = anyio.current_time() + DRAIN_AFTER_DISCONNECT_S
                elif out and (out := held(out)):
                    await x.write(_bytes(out), more=True)
            out = []
            for ev in parser.flush():
                if ev.data is not None and usage_from_event(ev, usage):
                    saw_usage = True
                out += await stream_event(flow, ev)
            out += pipeline.stream_end(flow)
            if (out := held(out)) and not gone():
                await x.write(_bytes(out), more=True)
        if drain_scope.cancelled_caught:
            flow.error = "client disconnected; upstream usage not received in time"
        if gone() and flow.error is None:
            flow.error = "client disconnected mid-stream"
        # Settle, then send what was held back: the agent sees the end after the books.
        account()
        await settle(flow)
        if flow.failed_policy is not None:  # a `complete` hook raised: fail closed
            raise PolicyFailed(flow.failed_policy, RuntimeError("complete"))
        tail = _bytes(closing)
    except PolicyFailed as exc:
        flow.error = str(exc)
        account()
        await settle(flow)
        tail = adapter.stream_error_event(
            f"ironrt router: {exc}; stream ended", "api_error", "policy_error"
        )
    except Exception as exc:  # upstream broke or stalled mid-stream
        kind = error_kind(exc)
        flow.error = f"stream interrupted: {kind}: {exc}"[:500]
        account()
        await settle(flow)
        tail = adapter.stream_error_event(
            f"ironrt router: the upstream stream stalled or broke off ({kind})", "api_error"
        )
    finally:
        if not hangup.done():
            hangup.cancel()
        elif not hangup.cancelled():
            hangup.exception()  # retrieved: a `receive` that broke counts as a hang-up
    if not gone():
        # The end of the answer and the end of the body leave in one write.
        await x.write(tail)


def _bytes(events: list[StreamEvent]) -> bytes:
    """The events as they go out: unchanged ones byte for byte, as the upstream sent them."""
    return b"".join([encode_event(ev) if ev.changed else ev.raw for ev in events])


# ---- message content for telemetry (ironrt.observe.otel_content) ------------------------

#: The most pieces of completion text kept per call (stream deltas are small).
_CAPTURE_MAX_PIECES = 4096


def _capture(flow: Flow, slots: list[TextSlot]) -> None:
    texts = flow.output_texts
    if texts is None:
        texts = flow.output_texts = []
    for slot in slots:
        if slot.where == "completion" and len(texts) < _CAPTURE_MAX_PIECES:
            texts.append(slot.text)


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
