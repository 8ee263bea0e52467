"""Ready-made flows for policy tests, as mitmproxy's `test/tflow.py` makes them for addons.

A policy test needs a `Flow` the way the router would build it: a real provider adapter
(so text slots, output limits and stream events are the provider's own), a parsed body,
the router's input bound, the upstream key the breaker keys its circuits on, and an agent
with budget scopes. Building all that by hand in every test file made each file carry its
own slightly different flow, and none of them quite the router's. Here it is one line:

    flow = tflow()                                        # OpenAI chat, agent "a1", no limits
    flow = tflow("anthropic", stream=True, pii="redact")  # Anthropic messages, streamed
    flow = tflow(ledger=ledger, budget_usd=0.01)          # scopes from a real Ledger
    flow = tflow(rpm=5, started=clock())                  # any Flow field, any agent setting

    policy.upstream_attempt(flow, tattempt(503))
    policy.stream_event(flow, tevent({"type": "message_stop"}))

What it must never do: import the router or anything above the kernel (it imports only
`ironrt.governance`, `ironrt.providers`, `ironrt.protocol` and the bottom layer), so a
policy's unit test stays a test of the policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from ironrt.governance.agent import AgentGovernance
from ironrt.governance.flow import Attempt, Endpoint, Flow, StreamEvent
from ironrt.governance.ledger import Ledger, Scope
from ironrt.providers import ADAPTERS, AnthropicAdapter, ProviderAdapter
from ironrt.providers.events import sse_bytes

__all__ = ["tagent", "tattempt", "tevent", "tflow"]

#: The model a flow names when the test does not say, per API family and endpoint: cheap,
#: priced by genai-prices, so the budget can bound it.
DEFAULT_MODELS: dict[tuple[str, str], str] = {
    ("openai", "embeddings"): "text-embedding-3-small",
    ("openai", ""): "gpt-4o-mini",
    ("anthropic", ""): "claude-haiku-4-5",
}
#: Anthropic's API requires `max_tokens`; a default body names a small one.
_ANTHROPIC_MAX_TOKENS = 256
#: Limits `tagent` sets on the agent's own scope (`Scope.apply` names).
_LIMITS = ("budget_usd", "window", "rpm", "tpm", "max_concurrent", "models")
_AGENT_FIELDS = frozenset(f.name for f in dataclasses.fields(AgentGovernance))
_FLOW_FIELDS = frozenset(f.name for f in dataclasses.fields(Flow))
_ENCODE = msgspec.json.encode
_DONE = "[DONE]"


def tagent(
    agent_id: str = "a1",
    *,
    ledger: Ledger | None = None,
    project: str | None = None,
    **settings: Any,
) -> AgentGovernance:
    """An agent as the daemon governs it: its own scope (`agent:ID`), its project's if
    named, then `global`, taken from `ledger` when given (so admission and settlement
    move the same books the test reads) or fresh otherwise.

    `settings` are limits of the agent's own scope (`budget_usd`, `window`, `rpm`, `tpm`,
    `max_concurrent`, `models`) or `AgentGovernance` fields (`pii`, `on_budget`,
    `scopes`, ...). Given `scopes`, those are the agent's scopes as they are.
    """
    limits = {name: settings.pop(name) for name in _LIMITS if name in settings}
    unknown = set(settings) - _AGENT_FIELDS
    if unknown:
        raise TypeError(f"tagent() got unknown settings: {', '.join(sorted(unknown))}")
    scopes: tuple[Scope, ...] | None = settings.pop("scopes", None)
    if scopes is None:
        keys = [f"agent:{agent_id}", *([f"project:{project}"] if project else []), "global"]
        scopes = tuple(ledger.scope(key) if ledger is not None else Scope(key) for key in keys)
    elif ledger is not None or project is not None:
        raise TypeError("tagent(): give either scopes or ledger/project, not both")
    if limits:
        if not scopes:
            raise TypeError("tagent(): limits need a scope to sit on")
        if ledger is not None:
            ledger.set_limits(scopes[0], limits)
        else:
            scopes[0].apply(limits, 0.0)
    return AgentGovernance(agent_id, scopes=scopes, **settings)


def default_body(
    family: str, endpoint: Endpoint, model: str, stream: bool, text: str = "hi"
) -> dict[str, Any] | None:
    """The smallest body an API family ("openai", "anthropic") accepts for `endpoint`
    (None: the endpoint has none)."""
    messages = [{"role": "user", "content": text}]
    body: dict[str, Any]
    if endpoint == "models" or endpoint == "unmetered":
        return None
    if endpoint in ("embeddings", "responses", "responses.input_tokens"):
        body = {"model": model, "input": text}
    elif endpoint == "messages" and family == "anthropic":
        body = {"model": model, "max_tokens": _ANTHROPIC_MAX_TOKENS, "messages": messages}
    else:
        body = {"model": model, "messages": messages}
    if stream:
        body["stream"] = True
    return body


def tflow(
    provider: str = "openai",
    endpoint: Endpoint | None = None,
    body: dict[str, Any] | None = None,
    *,
    model: str | None = None,
    stream: bool | None = None,
    agent: AgentGovernance | None = None,
    input_bound: int | None = None,
    text: str = "hi",
    **fields: Any,
) -> Flow:
    """A flow as the router hands it to the pipeline, before any policy ran.

    - `provider`: "openai", "anthropic" or any registered provider, with its real adapter.
    - `endpoint`: the provider's main one unless given (`chat.completions`, `messages`).
    - `body`: kept as given (the same dict: a test sees what a policy did to it), or the
      smallest valid body for the endpoint, with `text` as its one user message.
    - `model`, `stream`: read from the body as the router reads them unless given.
    - `input_bound`: the adapter's own bound from the body's encoded bytes (the router's
      number) unless given.
    - `agent`: as given, or `tagent(**settings)` with the fields of `fields` that are not
      `Flow` fields (`pii="redact"`, `ledger=...`, `budget_usd=1.0`, `rpm=5`, ...).
    - Every other keyword sets that `Flow` field (`started=clock()`, `committed=True`).

    `flow.upstream` is `"<provider>:<default base url>"`, as the router sets it.
    """
    adapter: ProviderAdapter = ADAPTERS[provider]
    family = "anthropic" if isinstance(adapter, AnthropicAdapter) else "openai"
    endpoint = endpoint or ("messages" if family == "anthropic" else "chat.completions")
    flow_fields = {k: v for k, v in fields.items() if k in _FLOW_FIELDS}
    agent_settings = {k: v for k, v in fields.items() if k not in _FLOW_FIELDS}
    if "adapter" in flow_fields:
        raise TypeError("tflow(): the adapter is the provider's (name it with `provider`)")
    if agent is None:
        agent = tagent(**agent_settings)
    elif agent_settings:
        raise TypeError(
            f"tflow(): agent settings ({', '.join(sorted(agent_settings))}) with an agent"
        )
    if body is None:
        chosen = model or DEFAULT_MODELS.get((family, endpoint)) or DEFAULT_MODELS[(family, "")]
        body = default_body(family, endpoint, chosen, bool(stream), text)
    if input_bound is None:
        size = len(_ENCODE(body)) if body is not None else 0
        input_bound = adapter.input_token_bound(endpoint, body, size) if body is not None else 0
    flow_fields.setdefault("upstream", f"{adapter.name}:{adapter.default_base_url}")
    return Flow(
        agent=agent,
        adapter=adapter,
        endpoint=endpoint,
        body=body,
        model=model if model is not None else adapter.request_model(endpoint, body),
        stream=stream if stream is not None else adapter.is_stream(endpoint, body),
        input_bound=input_bound,
        **flow_fields,
    )


def tattempt(
    status: int | None = None,
    *,
    failure: str | None = None,
    number: int = 1,
    retry_after: float | None = None,
    elapsed: float = 0.0,
) -> Attempt:
    """One try at the upstream: an HTTP `status` (200 unless a `failure` is given) or a
    `failure` ("connect", "timeout", "protocol"), never both."""
    if status is not None and failure is not None:
        raise ValueError("an attempt has a status or a failure, not both")
    if status is None and failure is None:
        status = 200
    return Attempt(number, status=status, failure=failure, retry_after=retry_after, elapsed=elapsed)


def tevent(data: Any, event: str | None = None) -> StreamEvent:
    """A server-sent event as it arrives from the provider: `raw` holds the wire bytes as
    the providers layer encodes them (an `event:` line, one `data:` line of JSON, a blank
    line), `data` the decoded payload.

    The `event:` name is the payload's `type` unless given, as both providers frame it
    (Anthropic's `message_start`, OpenAI Responses' `response.output_text.delta`; OpenAI
    chat chunks have no `type` and no `event:` line). `tevent("[DONE]")` is OpenAI's end
    of stream: its `data` is None, as the router's parser leaves it.
    """
    if data == _DONE:
        return StreamEvent(raw=b"data: [DONE]\n\n", event=event)
    if event is None and isinstance(data, dict) and isinstance(data.get("type"), str):
        event = data["type"]
    return StreamEvent(raw=sse_bytes(data, event), event=event, data=data)
