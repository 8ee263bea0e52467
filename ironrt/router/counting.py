"""Exact input token counts from the providers' count endpoints, for the budget margin.

The budget reserves an upper bound of each call's input from the body's bytes, which is
safe but loose (a token is about four bytes of English). When that loose bound is what
stands between a call and a refusal or a clamp, the router can ask the provider for the
exact count (Anthropic `POST /v1/messages/count_tokens`, OpenAI `POST
/v1/responses/input_tokens`; both free) and reserve that instead.

This module only decides what to ask and how to read the answer: the adapter builds the
count request (`ProviderAdapter.count_request`) and says how much to add so the count
stays an upper bound of the billed input (`count_margin`); the caller supplies `send`,
which does the I/O (to the provider with the real key, or to the offline provider via
`offline_sender`). Any failure gives None, and the caller keeps its byte bound: a count
is an optimisation, never a reason to refuse.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ironrt.governance.flow import Endpoint
from ironrt.providers import ADAPTERS
from ironrt.providers.base import ProviderAdapter
from ironrt.providers.offline import offline_response

__all__ = ["Sender", "exact_input_tokens", "offline_sender"]

log = logging.getLogger("ironrt.router")

#: `send(path, json_body)` -> (HTTP status, decoded JSON), or None on a transport failure.
Sender = Callable[[str, dict[str, Any]], Awaitable[tuple[int, Any] | None]]


async def exact_input_tokens(
    adapter: ProviderAdapter,
    endpoint: Endpoint,
    body: dict[str, Any],
    *,
    send: Sender,
) -> int | None:
    """count + margin, or None if the call cannot be counted or the count failed (the
    caller falls back to its byte bound).

    Translating a body for the count endpoint walks far more of it than anything else the
    router does; a shape nobody foresaw there is logged and costs only the exact count.
    """
    try:
        request = adapter.count_request(endpoint, body)
        if request is None:
            return None
        path, payload = request
        answer = await send(path, payload)
        if answer is None:
            return None
        status, decoded = answer
        if not 200 <= status < 300:
            return None
        count = adapter.count_from_response(decoded)
        if count is None:
            return None
        return count + adapter.count_margin(endpoint, body)
    except Exception:  # not CancelledError: a cancelled call stays cancelled
        log.exception("router: the exact input count of a %s call failed", endpoint)
        return None


def offline_sender(adapter_name: str) -> Sender:
    """A `send` answered by the offline provider, so offline mode counts with no network."""
    adapter = ADAPTERS[adapter_name]

    async def send(path: str, payload: dict[str, Any]) -> tuple[int, Any] | None:
        endpoint = adapter.endpoint_for("POST", path) or "unmetered"
        reply = offline_response(adapter_name, endpoint, payload, path=path)
        if reply.events is not None:
            return None
        try:
            return reply.status, msgspec.json.decode(reply.body)
        except msgspec.DecodeError:
            return None

    return send
