"""Answers the router makes itself, shaped like the provider's own, made in one place.

The SDKs raise their normal exceptions on these (an OpenAI `APIStatusError`, an Anthropic
`APIStatusError`), with a message that says what ironrt did and why. A refusal that must not
be retried carries `x-should-retry: false`, which both SDKs obey.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ironrt.governance.flow import Flow, Refusal
from ironrt.providers.base import ProviderAdapter, adapter_of

Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = (b"content-type", b"application/json")
NO_RETRY = (b"x-should-retry", b"false")


async def send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send,
    adapter: ProviderAdapter,
    status: int,
    message: str,
    type_: str,
    code: str | None,
    *,
    retry: bool,
    extra: list[tuple[bytes, bytes]] | None = None,
    param: str | None = None,
) -> None:
    body = adapter.error_body(status, message, type_, code, param)
    headers = [JSON, (b"content-length", str(len(body)).encode()), *(extra or [])]
    if not retry:
        headers.append(NO_RETRY)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def note_refusal(flow: Flow, refusal: Refusal) -> None:
    """Record the refusal on the flow (its trace says who refused and why)."""
    flow.status_code = refusal.status
    flow.error = f"refused by {refusal.policy or 'router'}: {refusal.code or refusal.type}"


async def send_refusal(send: Send, flow: Flow, refusal: Refusal) -> None:
    note_refusal(flow, refusal)
    await send_refused(send, adapter_of(flow), refusal)


async def send_refused(send: Send, adapter: ProviderAdapter, refusal: Refusal) -> None:
    """The refusal's answer alone (the flow, if any, was told already)."""
    extra = [(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()]
    await send_error(
        send,
        adapter,
        refusal.status,
        refusal.message,
        refusal.type,
        refusal.code,
        retry=refusal.retryable,
        extra=extra,
        param=refusal.param,
    )


async def send_policy_error(send: Send, adapter: ProviderAdapter, policy: str) -> None:
    """A policy raised after the request left (upstream_attempt, response, complete): the
    answer is withheld, the agent gets a provider-shaped 500 naming the policy."""
    await send_error(
        send,
        adapter,
        500,
        f"ironrt policy '{policy}' failed; the response was withheld",
        "api_error",
        "policy_error",
        retry=False,
    )
