"""The router's ASGI app: from the agent's request to the provider and back.

    agent SDK ──▶ authenticate (IC_TOKEN → agent) ──▶ parse ──▶ Flow
              ──▶ pipeline.request (budget → safety → reliability)
              ──▶ upstream (real key swapped in; retries per policy) or offline provider
              ──▶ relay.py: whole body through pipeline.response, or stream event by
                  event through pipeline.stream_event (usage read on the way)
              ──▶ settle (service.py): price usage, pipeline.complete, record trace + spend

Answers the router makes itself (refusals, errors) are provider-shaped, in responses.py.

Everything provider-specific is asked of the adapter; everything governance-specific is
decided by the policies. This module only moves bytes and keeps the books straight: the
agent gets provider-shaped errors, and every call, however it ends (refused, failed,
client gone mid-stream), is settled exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from ironrt.ledger import Ledger
from ironrt.router.admission import Admitter
from ironrt.router.counting import Sender, exact_input_tokens, offline_sender
from ironrt.router.flow import Flow
from ironrt.router.governance import AgentGovernance
from ironrt.router.pipeline import Pipeline
from ironrt.router.providers import ProviderAdapter, adapter_for
from ironrt.router.relay import relay_body, relay_stream
from ironrt.router.responses import note_refusal, send_error, send_json, send_refusal
from ironrt.router.upstream import (
    Upstream,
    UpstreamUnavailable,
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
_DECODE = msgspec.json.Decoder()
_ENCODE = msgspec.json.encode
_SUPPORTED = (
    "OpenAI /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models; "
    "Anthropic /v1/messages, /v1/messages/count_tokens"
)


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
        ledger: Ledger,
        admission_timeout: float,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.upstream = upstream
        self.lookup = lookup
        self.settle = settle
        self.admitter = Admitter(ledger, self._count, admission_timeout)

    async def _count(self, flow: Flow) -> int | None:
        if flow.body is None:
            return None
        send = count_sender(self, flow.adapter, flow.headers)
        return await exact_input_tokens(flow.adapter, flow.endpoint, flow.body, send=send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers = _headers(scope)
        if path in ("/health", "/healthz"):
            await send_json(send, 200, b'{"ok":true}')
            return
        adapter = adapter_for(path, headers)
        if adapter is None:
            await send_json(
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
            await send_error(
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
            await send_error(
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
            await send_error(
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
                await send_error(
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
                await send_error(
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
        flow = Flow(agent=gov, adapter=adapter, endpoint=endpoint, body=body, headers=headers)
        flow.model = adapter.request_model(endpoint, body) if body is not None else ""
        flow.stream = adapter.is_stream(endpoint, body) if body is not None else False
        flow.input_bound = (
            adapter.input_token_bound(endpoint, body, len(raw)) if body is not None else 0
        )
        base = self.config.base_urls.get(adapter.name)
        flow.metadata["upstream"] = f"{adapter.name}:{base or adapter.default_base_url}"
        try:
            await self._handle(flow, scope, headers, receive, send, raw, base)
        finally:
            with anyio.CancelScope(shield=True):
                await self.settle(flow)

    async def _handle(
        self,
        flow: Flow,
        scope: Scope,
        headers: dict[str, str],
        receive: Receive,
        send: Send,
        raw: bytes,
        base: str | None,
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
        if flow.refusal is None and flow.claim is not None:
            await self.admitter.admit(flow)
        if flow.refusal is not None:
            note_refusal(flow, flow.refusal)
            await self.settle(flow)
            await send_refusal(send, flow, flow.refusal)
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
                await self.settle(flow)
                await send_error(
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
            outgoing = upstream_headers(adapter, headers, found)
            qs = scope.get("query_string", b"")
            path = scope["path"] + (("?" + qs.decode("latin-1")) if qs else "")
            url = adapter.upstream_url(path, base)
            try:
                upstream = await self.upstream.send(
                    flow,
                    self.pipeline,
                    method=scope["method"],
                    url=url,
                    headers=outgoing,
                    content=raw,
                )
            except UpstreamUnavailable as exc:
                gave_up = flow.metadata.get("retry", {}).get("gave_up", False)
                status = 504 if exc.kind == "timeout" else 502
                flow.status_code, flow.error = status, str(exc)
                flow.upstream_failure = exc.kind
                await self.settle(flow)
                await send_error(
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
                await relay_stream(
                    flow, upstream, receive, send, self.pipeline, drop_usage, self.settle
                )
            else:
                await relay_body(flow, upstream, send, self.pipeline, self.settle)
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()


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


def upstream_headers(
    adapter: ProviderAdapter, headers: dict[str, str], found: tuple[str, str]
) -> dict[str, str]:
    """The agent's headers fit to go upstream, its IC_TOKEN swapped for the real key."""
    env_name, key = found
    outgoing = forward_headers(headers, adapter.auth_headers)
    outgoing.update(adapter.upstream_auth_headers(key, env_name))
    return outgoing


def count_sender(app: RouterApp, adapter: ProviderAdapter, headers: dict[str, str]) -> Sender:
    """How the budget asks the provider for an exact input count: the agent's own headers
    (beta flags, versions) with the real key, or the offline provider."""
    if app.config.offline:
        return offline_sender(adapter.name)
    found = app.config.keys(adapter.name)
    base = app.config.base_urls.get(adapter.name)

    async def send(path: str, payload: dict[str, Any]) -> tuple[int, Any] | None:
        if found is None:
            return None
        outgoing = upstream_headers(adapter, headers, found)
        outgoing["content-type"] = "application/json"
        return await app.upstream.post_json(
            adapter.name, adapter.upstream_url(path, base), outgoing, _ENCODE(payload)
        )

    return send
