"""Answers the router makes itself, shaped like the provider's own, made in one place.

The SDKs raise their normal exceptions on these (an OpenAI `APIStatusError`, an Anthropic
`APIStatusError`), with a message that says what ironrt did and why. A refusal that must not
be retried carries `x-should-retry: false`, which both SDKs obey.
"""

from __future__ import annotations

from ironrt.governance.flow import Flow, Refusal
from ironrt.providers.base import ProviderAdapter, adapter_of
from ironrt.router.exchange import Exchange

JSON = (b"content-type", b"application/json")
NO_RETRY = (b"x-should-retry", b"false")


async def send_json(x: Exchange, status: int, body: bytes) -> None:
    await x.answer(status, [JSON, (b"content-length", str(len(body)).encode())], body)


async def send_error(
    x: Exchange,
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
    await x.answer(status, headers, body)


def note_refusal(flow: Flow, refusal: Refusal) -> None:
    """Record the refusal on the flow (its trace says who refused and why)."""
    flow.status_code = refusal.status
    flow.error = f"refused by {refusal.policy or 'router'}: {refusal.code or refusal.type}"


async def send_refusal(x: Exchange, flow: Flow, refusal: Refusal) -> None:
    note_refusal(flow, refusal)
    await send_refused(x, adapter_of(flow), refusal)


async def send_refused(x: Exchange, adapter: ProviderAdapter, refusal: Refusal) -> None:
    """The refusal's answer alone (the flow, if any, was told already)."""
    extra = [(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()]
    await send_error(
        x,
        adapter,
        refusal.status,
        refusal.message,
        refusal.type,
        refusal.code,
        retry=refusal.retryable,
        extra=extra,
        param=refusal.param,
    )


async def send_policy_error(x: Exchange, adapter: ProviderAdapter, policy: str) -> None:
    """A policy raised after the request left (upstream_attempt, response, complete): the
    answer is withheld, the agent gets a provider-shaped 500 naming the policy."""
    await send_error(
        x,
        adapter,
        500,
        f"ironrt policy '{policy}' failed; the response was withheld",
        "api_error",
        "policy_error",
        retry=False,
    )
