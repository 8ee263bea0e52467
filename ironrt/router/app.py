"""The router's ASGI app: from the agent's request to the provider and back.

    agent SDK ──▶ authenticate (IC_TOKEN → agent) ──▶ parse ──▶ Flow
              ──▶ pipeline.request (budget → safety → reliability)
              ──▶ upstream (real key swapped in; retries per policy) or offline provider
              ──▶ relay: whole body through pipeline.response, or stream event by event
                  through pipeline.stream_event (usage read on the way)
              ──▶ settle: price usage, pipeline.complete, record trace + spend

Everything provider-specific is asked of the adapter; everything governance-specific is
decided by the policies. This module only moves bytes and keeps the books straight: the
agent gets provider-shaped errors, and every call, however it ends (refused, failed,
client gone mid-stream), is settled exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from ironrt.router.flow import Flow, Refusal, StreamEvent, TokenUsage
from ironrt.router.governance import AgentGovernance
from ironrt.router.pipeline import Pipeline, PolicyFailed
from ironrt.router.providers import adapter_for
from ironrt.router.providers.base import ProviderAdapter
from ironrt.router.sse import SSEParser, encode_event
from ironrt.router.upstream import (
    Upstream,
    UpstreamResponse,
    UpstreamUnavailable,
    error_kind,
    forward_headers,
    offline,
)
from ironrt.supervisor.environment import token_hash

log = logging.getLogger("ironrt.router")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Bodies above this are refused with 413 while being read (images in base64 fit well below).
MAX_BODY_BYTES = 16 * 1024 * 1024
#: After the agent hung up mid-stream, keep reading the upstream this long for its usage.
DRAIN_AFTER_DISCONNECT_S = 30.0
_DECODE = msgspec.json.Decoder()
_ENCODE = msgspec.json.encode
_SUPPORTED = (
    "OpenAI /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models; "
    "Anthropic /v1/messages, /v1/messages/count_tokens"
)
_NO_RETRY = (b"x-should-retry", b"false")
_JSON = (b"content-type", b"application/json")


@dataclass(slots=True)
class RouterConfig:
    offline: bool
    base_urls: dict[str, str | None]
    keys: Callable[[str], tuple[str, str] | None]


class RouterApp:
    def __init__(
        self,
        config: RouterConfig,
        pipeline: Pipeline,
        upstream: Upstream,
        lookup: Callable[[str], AgentGovernance | None],
        settle: Callable[[Flow], Awaitable[None]],
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.upstream = upstream
        self.lookup = lookup
        self.settle = settle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers = _headers(scope)
        if path in ("/health", "/healthz"):
            await _respond(send, 200, b'{"ok":true}')
            return
        adapter = adapter_for(path, headers)
        if adapter is None:
            await _respond(
                send,
                404,
                _ENCODE(
                    {
                        "error": {
                            "message": f"ironrt router: no such endpoint {method} {path}; "
                            f"supported: {_SUPPORTED}",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": "unknown_endpoint",
                        }
                    }
                ),
            )
            return
        token = adapter.token_from_headers(headers)
        gov = self.lookup(token_hash(token)) if token else None
        if gov is None or not gov.active:
            reason = (
                "no IC_TOKEN was sent (set the SDK's api_key from the agent's environment)"
                if not token
                else "the IC_TOKEN is unknown or revoked (the agent was stopped?)"
            )
            await self._error(
                send,
                adapter,
                401,
                f"ironrt router: {reason}",
                "authentication_error",
                "invalid_ic_token",
                retry=False,
            )
            return
        endpoint = adapter.endpoint_for(method, path)
        if endpoint is None or (endpoint == "unmetered" and not gov.allow_unmetered):
            await self._error(
                send,
                adapter,
                404,
                f"ironrt router: {method} {path} cannot be metered, so it is not "
                f"forwarded (start the agent with --allow-unmetered to allow it); "
                f"supported: {_SUPPORTED}",
                "invalid_request_error",
                "endpoint_not_supported",
                retry=False,
            )
            return
        try:
            raw = await _read_body(receive)
        except _BodyTooLarge:
            await self._error(
                send,
                adapter,
                413,
                f"ironrt router: request body larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB",
                "invalid_request_error",
                "request_too_large",
                retry=False,
            )
            return
        except _ClientGone:
            return
        body: dict[str, Any] | None = None
        if raw and endpoint != "unmetered":
            try:
                decoded = _DECODE.decode(raw)
            except msgspec.DecodeError as exc:
                await self._error(
                    send,
                    adapter,
                    400,
                    f"ironrt router: malformed JSON body: {exc}",
                    "invalid_request_error",
                    "invalid_json",
                    retry=False,
                )
                return
            if not isinstance(decoded, dict):
                await self._error(
                    send,
                    adapter,
                    400,
                    "ironrt router: the JSON body must be an object",
                    "invalid_request_error",
                    "invalid_json",
                    retry=False,
                )
                return
            body = decoded
        flow = Flow(agent=gov, adapter=adapter, endpoint=endpoint, body=body)
        flow.model = adapter.request_model(endpoint, body) if body is not None else ""
        flow.stream = adapter.is_stream(endpoint, body) if body is not None else False
        flow.metadata["input_tokens_bound"] = (
            adapter.input_token_bound(endpoint, body, len(raw)) if body is not None else 0
        )
        base = self.config.base_urls.get(adapter.name)
        flow.metadata["upstream"] = f"{adapter.name}:{base or adapter.default_base_url}"
        try:
            await self._handle(flow, scope, receive, send, raw, base)
        finally:
            with anyio.CancelScope(shield=True):
                await self.settle(flow)

    async def _handle(
        self, flow: Flow, scope: Scope, receive: Receive, send: Send, raw: bytes, base: str | None
    ) -> None:
        adapter = flow.adapter
        drop_usage = False
        if (
            flow.stream
            and flow.body is not None
            and adapter.ensure_stream_usage(flow.endpoint, flow.body)
        ):
            drop_usage = True
            flow.body_changed = True
        self.pipeline.request(flow)
        if flow.refusal is not None:
            await self._refuse(send, flow, flow.refusal)
            return
        if flow.body_changed and flow.body is not None:
            raw = _ENCODE(flow.body)
        if self.config.offline:
            upstream = offline(flow, scope["path"])
        else:
            found = self.config.keys(adapter.name)
            if found is None:
                flow.status_code = 401
                flow.error = "no provider key"
                await self._error(
                    send,
                    adapter,
                    401,
                    f"ironrt has no {adapter.name} API key: export {adapter.key_env[0]} in the "
                    "environment that starts the daemon (then `ironrt daemon stop`; the next "
                    "command restarts it), add it to $IRONRT_HOME/keys.toml, or run offline "
                    "with IRONRT_OFFLINE=1",
                    "authentication_error",
                    "no_provider_key",
                    retry=False,
                )
                return
            env_name, key = found
            headers = forward_headers(scope["headers"], adapter.auth_headers)
            headers.update(adapter.upstream_auth_headers(key, env_name))
            qs = scope.get("query_string", b"")
            path = scope["path"] + (("?" + qs.decode("latin-1")) if qs else "")
            url = adapter.upstream_url(path, base)
            try:
                upstream = await self.upstream.send(
                    flow,
                    self.pipeline,
                    method=scope["method"],
                    url=url,
                    headers=headers,
                    content=raw,
                )
            except UpstreamUnavailable as exc:
                gave_up = flow.metadata.get("retry", {}).get("gave_up", False)
                status = 504 if exc.kind == "timeout" else 502
                flow.status_code, flow.error = status, str(exc)
                await self._error(
                    send,
                    adapter,
                    status,
                    f"ironrt router: the {adapter.name} API is unreachable: {exc}",
                    "api_error",
                    "upstream_unreachable",
                    retry=not gave_up,
                )
                return
        try:
            if flow.stream and upstream.status < 300 and "event-stream" in upstream.content_type:
                await self._relay_stream(flow, upstream, receive, send, drop_usage)
            else:
                await self._relay_body(flow, upstream, send)
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()

    async def _relay_body(self, flow: Flow, upstream: UpstreamResponse, send: Send) -> None:
        adapter = flow.adapter
        try:
            data = await upstream.read()
        except Exception as exc:  # the upstream broke mid-body
            flow.status_code, flow.error = 502, f"upstream body: {error_kind(exc)}"
            await self._error(
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
        headers = list(upstream.headers)
        if (
            upstream.status < 300
            and "json" in upstream.content_type
            and flow.endpoint != "unmetered"
        ):
            try:
                parsed = _DECODE.decode(data)
            except msgspec.DecodeError:
                parsed = None
            if parsed is not None:
                flow.usage = adapter.usage_from_response(flow.endpoint, parsed)
                if isinstance(parsed, dict) and isinstance(parsed.get("model"), str):
                    flow.model = parsed["model"] or flow.model
                try:
                    if self.pipeline.response(flow, parsed):
                        data = _ENCODE(parsed)
                except PolicyFailed as exc:
                    flow.status_code, flow.error = 500, str(exc)
                    await self._error(
                        send,
                        adapter,
                        500,
                        f"ironrt router: {exc}; the response was withheld",
                        "api_error",
                        "policy_error",
                        retry=False,
                    )
                    return
        elif upstream.status >= 400:
            flow.error = _error_text(data)
            if flow.metadata.get("retry", {}).get("gave_up"):
                headers.append(_NO_RETRY)
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        flow.committed = True

    async def _relay_stream(
        self, flow: Flow, upstream: UpstreamResponse, receive: Receive, send: Send, drop_usage: bool
    ) -> None:
        adapter = flow.adapter
        flow.status_code = upstream.status
        headers = list(upstream.headers)
        await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
        flow.committed = True
        parser = SSEParser()
        usage = TokenUsage()
        saw_usage = False
        stream_model = ""
        gone = anyio.Event()

        async def watch_client() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        async def emit(events: list[StreamEvent]) -> None:
            if gone.is_set() or not events:
                return
            out = b"".join(encode_event(ev) if ev.changed else ev.raw for ev in events)
            await send({"type": "http.response.body", "body": out, "more_body": True})

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_client)
            try:
                with anyio.CancelScope() as drain_scope:
                    async for chunk in upstream.iter_bytes():
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
                            out.extend(self.pipeline.stream_event(flow, ev))
                        await emit(out)
                        if gone.is_set() and drain_scope.deadline == float("inf"):
                            # The agent hung up: keep reading (bounded) only to learn the usage.
                            drain_scope.deadline = anyio.current_time() + DRAIN_AFTER_DISCONNECT_S
                    tail = parser.flush()
                    out = []
                    for ev in tail:
                        if ev.data is not None and adapter.usage_from_event(
                            flow.endpoint, ev, usage
                        ):
                            saw_usage = True
                        out.extend(self.pipeline.stream_event(flow, ev))
                    out.extend(self.pipeline.stream_end(flow))
                    await emit(out)
                if drain_scope.cancelled_caught:
                    flow.error = "client disconnected; upstream usage not received in time"
            except PolicyFailed as exc:
                flow.error = str(exc)
                await self._stream_error(send, flow, f"ironrt router: {exc}; stream ended", gone)
            except Exception as exc:  # upstream broke or stalled mid-stream
                kind = error_kind(exc)
                flow.error = f"stream interrupted: {kind}: {exc}"[:500]
                await self._stream_error(
                    send,
                    flow,
                    f"ironrt router: the upstream stream stalled or broke off ({kind})",
                    gone,
                )
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b""})
            elif flow.error is None:
                flow.error = "client disconnected mid-stream"
            tg.cancel_scope.cancel()
        if saw_usage:
            flow.usage = usage
        if stream_model:
            flow.model = stream_model

    async def _stream_error(self, send: Send, flow: Flow, message: str, gone: anyio.Event) -> None:
        if gone.is_set():
            return
        await send(
            {
                "type": "http.response.body",
                "body": flow.adapter.stream_error_event(message, "api_error"),
                "more_body": True,
            }
        )

    async def _refuse(self, send: Send, flow: Flow, refusal: Refusal) -> None:
        flow.status_code = refusal.status
        flow.error = f"refused by {refusal.policy or 'router'}: {refusal.code or refusal.type}"
        extra = [(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()]
        await self._error(
            send,
            flow.adapter,
            refusal.status,
            refusal.message,
            refusal.type,
            refusal.code,
            retry=refusal.retryable,
            extra=extra,
        )

    async def _error(
        self,
        send: Send,
        adapter: ProviderAdapter,
        status: int,
        message: str,
        type_: str,
        code: str | None,
        *,
        retry: bool,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = adapter.error_body(status, message, type_, code)
        headers = [_JSON, (b"content-length", str(len(body)).encode()), *(extra or [])]
        if not retry:
            headers.append(_NO_RETRY)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error_text(data: bytes) -> str:
    try:
        parsed = _DECODE.decode(data)
    except msgspec.DecodeError:
        return data[:300].decode("utf-8", "replace")
    if isinstance(parsed, dict):
        err = parsed.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:300]
    return data[:300].decode("utf-8", "replace")
