"""Provider adapters: routing, auth, errors, usage, token bounds and text slots.

Where a shape matters to an SDK (errors, stream errors, synthesized delta events), the
bytes are handed to the real `openai`/`anthropic` SDK through a mock transport, so the
test proves the SDK parses them, not just that they look right.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import genai_prices
import httpx2
import msgspec
import openai
import pytest

from ironrt.governance.flow import Endpoint, StreamEvent, TokenUsage
from ironrt.governance.pricing import genai_usage
from ironrt.keys import load_keys
from ironrt.providers import ADAPTERS, AnthropicAdapter, OpenAIAdapter, adapter_for
from ironrt.providers.base import (
    IMAGE_TOKENS_ALLOWANCE,
    channel_closed,
    context_window,
    join_url,
)
from ironrt.providers.offline import offline_response
from ironrt.router.sse import SSEParser, encode_event

OA = OpenAIAdapter()
AN = AnthropicAdapter()


def parse(events: list[bytes]) -> list[StreamEvent]:
    parser = SSEParser()
    out: list[StreamEvent] = []
    for raw in events:
        out += parser.feed(raw)
    return out + parser.flush()


def offline_events(provider: str, endpoint: Endpoint, body: dict[str, Any]) -> list[StreamEvent]:
    reply = offline_response(provider, endpoint, body)
    assert reply.events is not None
    return parse(reply.events)


def mock_client(handler: Callable[[httpx2.Request], httpx2.Response]) -> httpx2.Client:
    return httpx2.Client(transport=httpx2.MockTransport(handler))


def sse_response(chunks: list[bytes]) -> Callable[[httpx2.Request], httpx2.Response]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"".join(chunks)
        )

    return handler


@pytest.fixture
def openai_sdk() -> Iterator[Callable[..., openai.OpenAI]]:
    clients: list[openai.OpenAI] = []

    def make(handler: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
        client = openai.OpenAI(
            api_key="x", base_url="http://up/v1", http_client=mock_client(handler), max_retries=0
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def anthropic_sdk() -> Iterator[Callable[..., anthropic.Anthropic]]:
    clients: list[anthropic.Anthropic] = []

    def make(handler: Callable[[httpx2.Request], httpx2.Response]) -> anthropic.Anthropic:
        client = anthropic.Anthropic(
            api_key="x", base_url="http://up", http_client=mock_client(handler), max_retries=0
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# ---- routing and auth -------------------------------------------------------------------------


def test_endpoints() -> None:
    assert OA.endpoint_for("POST", "/v1/chat/completions") == "chat.completions"
    assert OA.endpoint_for("post", "/v1/responses?x=1") == "responses"
    assert OA.endpoint_for("POST", "/v1/embeddings/") == "embeddings"
    assert OA.endpoint_for("GET", "/v1/models/gpt-4o") == "models"
    assert OA.endpoint_for("GET", "/v1/responses/resp_1") == "unmetered"
    assert OA.endpoint_for("POST", "/v1/images/generations") == "unmetered"
    assert OA.endpoint_for("GET", "/health") is None
    assert AN.endpoint_for("POST", "/v1/messages") == "messages"
    assert AN.endpoint_for("POST", "/v1/messages/count_tokens") == "messages.count_tokens"
    assert AN.endpoint_for("POST", "/v1/messages/batches") == "unmetered"
    assert AN.endpoint_for("GET", "/v1/models") == "models"


def test_adapter_for() -> None:
    assert adapter_for("/v1/messages", {"authorization": "Bearer t"}) is ADAPTERS["anthropic"]
    assert adapter_for("/v1/models", {"anthropic-version": "2023-06-01"}) is ADAPTERS["anthropic"]
    assert adapter_for("/v1/models", {"X-Api-Key": "t"}) is ADAPTERS["anthropic"]
    # Only OpenAI has these: a token sent as x-api-key there is OpenAI's 401, not an
    # Anthropic path that "cannot be metered".
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings"):
        assert adapter_for(path, {"x-api-key": "t"}) is ADAPTERS["openai"]
    assert adapter_for("/v1/models", {"authorization": "Bearer t"}) is ADAPTERS["openai"]
    assert adapter_for("/v1/chat/completions", {}) is ADAPTERS["openai"]
    assert adapter_for("/metrics", {}) is None


def test_upstream_urls() -> None:
    assert join_url("https://api.openai.com", "/v1/chat/completions") == (
        "https://api.openai.com/v1/chat/completions"
    )
    assert join_url("http://127.0.0.1:9/v1/", "/v1/models?limit=2") == (
        "http://127.0.0.1:9/v1/models?limit=2"
    )
    assert join_url("https://gw.example/openai/v1", "/v1/responses") == (
        "https://gw.example/openai/v1/responses"
    )
    assert OA.upstream_url("/v1/embeddings") == "https://api.openai.com/v1/embeddings"
    assert AN.upstream_url("/v1/messages", "http://127.0.0.1:5") == "http://127.0.0.1:5/v1/messages"


def test_tokens_and_keys() -> None:
    assert OA.token_from_headers({"authorization": "Bearer ic-123"}) == "ic-123"
    assert OA.token_from_headers({"Authorization": "bearer  ic-9 "}) == "ic-9"
    assert OA.token_from_headers({"authorization": "Basic zzz"}) is None
    assert OA.token_from_headers({}) is None
    assert AN.token_from_headers({"x-api-key": "ic-1"}) == "ic-1"
    assert AN.token_from_headers({"authorization": "Bearer ic-2"}) == "ic-2"
    assert OA.upstream_auth_headers("sk-real") == {"authorization": "Bearer sk-real"}
    assert AN.upstream_auth_headers("sk-ant") == {"x-api-key": "sk-ant"}
    assert AN.upstream_auth_headers("tok", "ANTHROPIC_AUTH_TOKEN") == {
        "authorization": "Bearer tok"
    }
    # Which variable a key comes from is the daemon's keys module's job (ironrt.keys).
    nowhere = Path("/nonexistent/keys.toml")
    bearer = load_keys({"ANTHROPIC_AUTH_TOKEN": "t"}, nowhere)
    assert (bearer.sources["anthropic"], bearer.get("anthropic")) == ("ANTHROPIC_AUTH_TOKEN", "t")
    both = load_keys({"ANTHROPIC_API_KEY": "k", "ANTHROPIC_AUTH_TOKEN": "t"}, nowhere)
    assert (both.sources["anthropic"], both.get("anthropic")) == ("ANTHROPIC_API_KEY", "k")
    assert load_keys({"OPENAI_API_KEY": ""}, nowhere).get("openai") is None
    assert {"authorization", "x-api-key"} <= set(OA.auth_headers)


# ---- errors ---------------------------------------------------------------------------------


def test_openai_error_body_parses_in_sdk(openai_sdk: Callable[..., openai.OpenAI]) -> None:
    body = OA.error_body(429, "Budget exhausted", "insufficient_quota", "budget_exhausted")

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, content=body, headers={"content-type": "application/json"})

    with pytest.raises(openai.RateLimitError) as info:
        openai_sdk(handler).chat.completions.create(model="m", messages=[])
    assert info.value.code == "budget_exhausted"
    assert info.value.type == "insufficient_quota"
    assert "Budget exhausted" in info.value.message


@pytest.mark.parametrize(
    ("status", "kind", "exc"),
    [
        (400, "invalid_request_error", anthropic.BadRequestError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (402, "billing_error", anthropic.APIStatusError),
        (403, "permission_error", anthropic.PermissionDeniedError),
        (404, "not_found_error", anthropic.NotFoundError),
        (413, "request_too_large", anthropic.APIStatusError),
        (429, "rate_limit_error", anthropic.RateLimitError),
        (500, "api_error", anthropic.InternalServerError),
        (529, "overloaded_error", anthropic.APIStatusError),
    ],
)
def test_anthropic_error_body_parses_in_sdk(
    anthropic_sdk: Callable[..., anthropic.Anthropic],
    status: int,
    kind: str,
    exc: type[anthropic.APIStatusError],
) -> None:
    body = AN.error_body(status, "refused by ironrt", "not_an_anthropic_type", None)
    assert msgspec.json.decode(body) == {
        "type": "error",
        "error": {"type": kind, "message": "refused by ironrt"},
    }

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, content=body, headers={"content-type": "application/json"})

    with pytest.raises(exc) as info:
        anthropic_sdk(handler).messages.create(model="m", max_tokens=1, messages=[])
    assert info.value.status_code == status
    assert "refused by ironrt" in str(info.value)


def test_anthropic_error_keeps_a_known_type() -> None:
    body = msgspec.json.decode(AN.error_body(400, "m", "rate_limit_error", None))
    assert body["error"]["type"] == "rate_limit_error"


def test_openai_stream_error_raises_midway(openai_sdk: Callable[..., openai.OpenAI]) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    events = offline_response("openai", "chat.completions", body).events
    assert events is not None
    chunks = [*events[:3], OA.stream_error_event("Budget exhausted mid-stream", "budget")]
    client = openai_sdk(sse_response(chunks))
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(**body):
            received.append(chunk.choices[0].delta.content or "")
    assert len(received) == 3
    assert "Budget exhausted mid-stream" in info.value.message


def test_openai_stream_error_raises_in_responses(openai_sdk: Callable[..., openai.OpenAI]) -> None:
    body = {"model": "gpt-4o-mini", "input": "hi", "stream": True}
    events = offline_response("openai", "responses", body).events
    assert events is not None
    client = openai_sdk(sse_response([*events[:4], OA.stream_error_event("cut", "server_error")]))
    with pytest.raises(openai.APIError, match="cut"):
        list(client.responses.create(**body))


def test_anthropic_stream_error_raises_midway(
    anthropic_sdk: Callable[..., anthropic.Anthropic],
) -> None:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
    events = offline_response("anthropic", "messages", {**body, "stream": True}).events
    assert events is not None
    error = AN.stream_error_event("PII blocked", "invalid_request_error")
    client = anthropic_sdk(sse_response([*events[:5], error]))
    with pytest.raises(anthropic.APIStatusError) as info, client.messages.stream(**body) as stream:
        for _ in stream:
            pass
    assert "PII blocked" in str(info.value)


# ---- request shape ----------------------------------------------------------------------------


def test_stream_usage_option() -> None:
    body: dict[str, Any] = {"stream": True, "stream_options": {"include_obfuscation": False}}
    assert OA.ensure_stream_usage("chat.completions", body) is True
    assert body["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert OA.ensure_stream_usage("chat.completions", body) is False
    bare: dict[str, Any] = {"stream": True}
    assert OA.ensure_stream_usage("chat.completions", bare) is True
    assert bare["stream_options"] == {"include_usage": True}
    assert OA.ensure_stream_usage("chat.completions", {"stream": False}) is False
    assert OA.ensure_stream_usage("responses", {"stream": True}) is False
    assert AN.ensure_stream_usage("messages", {"stream": True}) is False


def test_usage_only_chunk_detection() -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    events = offline_events(
        "openai", "chat.completions", {**body, "stream_options": {"include_usage": True}}
    )
    flags = [OA.is_usage_only_chunk("chat.completions", ev) for ev in events]
    assert flags[-2] is True and sum(flags) == 1  # the usage chunk, just before [DONE]
    assert events[-1].raw == b"data: [DONE]\n\n"
    plain = offline_events("openai", "chat.completions", body)
    assert not any(OA.is_usage_only_chunk("chat.completions", ev) for ev in plain)


def test_max_output_tokens() -> None:
    assert OA.max_output_tokens("chat.completions", {"max_tokens": 10}) == 10
    assert (
        OA.max_output_tokens("chat.completions", {"max_completion_tokens": 7, "max_tokens": 10})
        == 7
    )
    assert OA.max_output_tokens("chat.completions", {}) is None
    legacy: dict[str, Any] = {"max_tokens": 100}
    OA.set_max_output_tokens("chat.completions", legacy, 5)
    assert legacy == {"max_tokens": 5}
    modern: dict[str, Any] = {}
    OA.set_max_output_tokens("chat.completions", modern, 5)
    assert modern == {"max_completion_tokens": 5}
    responses: dict[str, Any] = {"max_output_tokens": 99}
    OA.set_max_output_tokens("responses", responses, 3)
    assert OA.max_output_tokens("responses", responses) == 3
    assert OA.max_output_tokens("embeddings", {"max_tokens": 3}) is None
    messages: dict[str, Any] = {"max_tokens": 1000}
    AN.set_max_output_tokens("messages", messages, 12)
    assert AN.max_output_tokens("messages", messages) == 12
    assert OA.choices("chat.completions", {"n": 3}) == 3
    assert OA.choices("chat.completions", {}) == 1
    assert AN.choices("messages", {"n": 3}) == 1


def test_input_token_bound() -> None:
    text = "héllo wörld " * 50
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    raw = msgspec.json.encode(body)
    bound = OA.input_token_bound("chat.completions", body, len(raw))
    assert bound >= len(text.encode())  # a token is at least one byte of text
    image = {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}
    with_image = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [image]}]}
    assert OA.input_token_bound("chat.completions", with_image, 80) >= IMAGE_TOKENS_ALLOWANCE
    chained = {"model": "gpt-4o-mini", "input": "go on", "previous_response_id": "resp_1"}
    window = context_window("openai", "gpt-4o-mini")
    assert window is not None
    assert OA.input_token_bound("responses", chained, 60) == window  # capped by the window
    huge = OA.input_token_bound("responses", {"model": "gpt-4o-mini", "input": "x"}, window * 2)
    assert huge >= window * 2  # the bytes bound always holds
    doc = {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}
    an_body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [doc]}],
    }
    assert AN.input_token_bound("messages", an_body, 100) == context_window(
        "anthropic", "claude-haiku-4-5"
    )
    tools = {"model": "unknown-model", "tools": [{"name": "t", "input_schema": {}}], "messages": []}
    assert AN.input_token_bound("messages", tools, 100) > 1000


# ---- usage -------------------------------------------------------------------------------------


def test_usage_from_openai_bodies() -> None:
    chat = {
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 40,
            "prompt_tokens_details": {"cached_tokens": 60},
            "completion_tokens_details": {"reasoning_tokens": 30},
        }
    }
    assert OA.usage_from_response("chat.completions", chat) == TokenUsage(100, 40, 60, 0, 30)
    responses = {
        "usage": {
            "input_tokens": 50,
            "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
            "output_tokens": 9,
            "output_tokens_details": {"reasoning_tokens": 2},
        }
    }
    assert OA.usage_from_response("responses", responses) == TokenUsage(50, 9, 10, 5, 2)
    embeddings = {"usage": {"prompt_tokens": 8, "total_tokens": 8}}
    assert OA.usage_from_response("embeddings", embeddings) == TokenUsage(8, 0)
    assert OA.usage_from_response("chat.completions", {"choices": []}) is None
    assert OA.usage_from_response("models", {"usage": {}}) is None


def test_usage_from_anthropic_body_counts_cache_as_input() -> None:
    body = {
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
            "output_tokens": 7,
            "output_tokens_details": {"thinking_tokens": 3},
        }
    }
    assert AN.usage_from_response("messages", body) == TokenUsage(130, 7, 100, 20, 3)


def test_usage_from_anthropic_stream_is_cumulative() -> None:
    start = StreamEvent(
        b"",
        "message_start",
        {
            "type": "message_start",
            "message": {
                "model": "claude-haiku-4-5",
                "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1},
            },
        },
    )
    delta = StreamEvent(
        b"", "message_delta", {"type": "message_delta", "usage": {"output_tokens": 42}}
    )
    acc = TokenUsage()
    assert AN.usage_from_event("messages", start, acc)
    assert acc == TokenUsage(15, 1, 5, 0, 0)
    assert AN.usage_from_event("messages", delta, acc)
    assert AN.usage_from_event("messages", delta, acc)  # cumulative: seen twice, counted once
    assert acc == TokenUsage(15, 42, 5, 0, 0)
    assert AN.stream_model("messages", start) == "claude-haiku-4-5"
    full = {
        "type": "message_delta",
        "usage": {"input_tokens": 12, "cache_read_input_tokens": 5, "output_tokens": 50},
    }
    assert AN.usage_from_event("messages", StreamEvent(b"", "message_delta", full), acc)
    assert acc == TokenUsage(17, 50, 5, 0, 0)


@pytest.mark.parametrize(
    ("provider", "endpoint", "body"),
    [
        (
            "openai",
            "chat.completions",
            {
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "one two three"}],
            },
        ),
        ("openai", "responses", {"input": "one two three"}),
        (
            "anthropic",
            "messages",
            {"max_tokens": 100, "messages": [{"role": "user", "content": "one two three"}]},
        ),
    ],
)
def test_usage_from_stream_matches_non_stream(
    provider: str, endpoint: Endpoint, body: dict[str, Any]
) -> None:
    adapter = ADAPTERS[provider]
    body = {"model": "gpt-4o-mini" if provider == "openai" else "claude-haiku-4-5", **body}
    plain = offline_response(provider, endpoint, body)
    expected = adapter.usage_from_response(endpoint, msgspec.json.decode(plain.body))
    acc = TokenUsage()
    models = set()
    seen = False
    for ev in offline_events(provider, endpoint, {**body, "stream": True}):
        seen = adapter.usage_from_event(endpoint, ev, acc) or seen
        models.add(adapter.stream_model(endpoint, ev))
    assert seen and expected is not None and acc == expected
    assert expected.output_tokens > 0 and expected.input_tokens > 0
    assert body["model"] in models


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4.1-mini"),
        ("openai", "text-embedding-3-small"),
        ("anthropic", "claude-haiku-4-5"),
        ("anthropic", "claude-3-5-haiku-latest"),
        ("anthropic", "claude-sonnet-4-5"),
    ],
)
def test_price_usage_works_with_genai_prices(provider: str, model: str) -> None:
    usage = TokenUsage(input_tokens=1000, output_tokens=200, cached_tokens=400, reasoning_tokens=50)
    price = genai_prices.calc_price(genai_usage(usage), model, provider_id=provider)
    assert price.total_price > 0
    no_cache = genai_prices.calc_price(
        genai_usage(TokenUsage(input_tokens=1000, output_tokens=200)),
        model,
        provider_id=provider,
    )
    assert price.total_price <= no_cache.total_price  # cached input is a discounted part


# ---- text slots: requests ------------------------------------------------------------------------


def roundtrip(slots_of: Callable[[Callable[[], None]], list[Any]]) -> list[str]:
    """Upper-case every slot; return the original texts and check on_change fired."""
    changes: list[int] = []
    slots = slots_of(lambda: changes.append(1))
    texts = [slot.text for slot in slots]
    for slot in slots:
        slot.set(slot.text.upper())
    assert len(changes) == len(slots)
    assert [s.text for s in slots_of(lambda: None)] == [t.upper() for t in texts]
    return texts


def test_chat_request_texts_roundtrip() -> None:
    body: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://x"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":"b"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "result"},
        ]
    }
    slots = OA.request_texts("chat.completions", body, lambda: None)
    assert [(s.text, s.where) for s in slots] == [
        ("sys", "system"),
        ("dev", "system"),
        ("look", "prompt"),
        ('{"a":"b"}', "tool_arguments"),
        ("result", "tool_result"),
    ]
    assert len({s.channel for s in slots}) == len(slots)
    roundtrip(lambda change: OA.request_texts("chat.completions", body, change))
    assert body["messages"][2]["content"][0]["text"] == "LOOK"
    assert body["messages"][3]["tool_calls"][0]["function"]["arguments"] == '{"A":"B"}'


def test_responses_request_texts_roundtrip() -> None:
    body: dict[str, Any] = {
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": "plain"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "part"},
                    {"type": "input_image", "image_url": "u"},
                ],
            },
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "out"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "before"}]},
        ],
    }
    texts = roundtrip(lambda change: OA.request_texts("responses", body, change))
    assert texts == ["be brief", "plain", "part", "{}", "out", "before"]
    assert body["instructions"] == "BE BRIEF" and body["input"][3]["output"] == "OUT"
    simple: dict[str, Any] = {"input": "just text"}
    assert roundtrip(lambda change: OA.request_texts("responses", simple, change)) == ["just text"]
    assert simple["input"] == "JUST TEXT"


def test_embeddings_request_texts_roundtrip() -> None:
    body: dict[str, Any] = {"input": ["a", "b"]}
    assert roundtrip(lambda change: OA.request_texts("embeddings", body, change)) == ["a", "b"]
    assert body["input"] == ["A", "B"]
    single: dict[str, Any] = {"input": "x"}
    [slot] = OA.request_texts("embeddings", single, lambda: None)
    assert slot.where == "input"
    assert OA.request_texts("embeddings", {"input": [1, 2, 3]}, lambda: None) == []


def test_anthropic_request_texts_roundtrip() -> None:
    body: dict[str, Any] = {
        "system": [{"type": "text", "text": "sys"}],
        "messages": [
            {"role": "user", "content": "hello"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "calling"},
                    {
                        "type": "tool_use",
                        "id": "t",
                        "name": "f",
                        "input": {"q": "find", "n": 1, "tags": ["x"]},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [{"type": "text", "text": "found"}],
                    },
                    {"type": "tool_result", "tool_use_id": "u", "content": "flat"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },
        ],
    }
    slots = AN.request_texts("messages", body, lambda: None)
    assert sorted((s.text, s.where) for s in slots) == sorted(
        [
            ("sys", "system"),
            ("hello", "prompt"),
            ("calling", "prompt"),
            ("find", "tool_arguments"),
            ("x", "tool_arguments"),
            ("found", "tool_result"),
            ("flat", "tool_result"),
        ]
    )
    roundtrip(lambda change: AN.request_texts("messages", body, change))
    assert body["messages"][1]["content"][1]["input"] == {"q": "FIND", "n": 1, "tags": ["X"]}
    assert body["system"][0]["text"] == "SYS"
    assert AN.request_texts("messages.count_tokens", {"system": "s", "messages": []}, lambda: None)


# ---- text slots: responses and streams ------------------------------------------------------


def test_response_texts() -> None:
    chat = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}},
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
            },
        ]
    }
    slots = OA.response_texts("chat.completions", chat)
    assert [(s.channel, s.text, s.where) for s in slots] == [
        (("choice", 0, "content"), "hi", "completion"),
        (("choice", 1, "tool", 0), "{}", "tool_arguments"),
    ]
    slots[0].set("HI")
    assert chat["choices"][0]["message"]["content"] == "HI"  # type: ignore[index]
    responses = msgspec.json.decode(
        offline_response("openai", "responses", {"model": "m", "input": "x y"}).body
    )
    [slot] = OA.response_texts("responses", responses)
    assert slot.channel == ("output", 0, 0) and slot.text.startswith("This is")
    message = msgspec.json.decode(
        offline_response(
            "anthropic",
            "messages",
            {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "q"}]},
        ).body
    )
    [slot] = AN.response_texts("messages", message)
    slot.set("redacted")
    assert message["content"][0]["text"] == "redacted"


STREAM_CASES = [
    (
        "openai",
        "chat.completions",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "mail bob@example.com now"}],
        },
    ),
    ("openai", "responses", {"model": "gpt-4o-mini", "input": "mail bob@example.com now"}),
    (
        "anthropic",
        "messages",
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "mail bob@example.com now"}],
        },
    ),
]


@pytest.mark.parametrize(("provider", "endpoint", "body"), STREAM_CASES)
def test_event_texts_follow_channels_and_close(
    provider: str, endpoint: Endpoint, body: dict[str, Any]
) -> None:
    adapter = ADAPTERS[provider]
    full = adapter.response_texts(
        endpoint, msgspec.json.decode(offline_response(provider, endpoint, body).body)
    )[0].text
    events = offline_events(provider, endpoint, {**body, "stream": True})
    open_text: dict[Any, str] = {}
    closed_text: dict[Any, str] = {}
    for ev in events:
        for key in adapter.event_closes(endpoint, ev):
            for channel in [c for c in open_text if channel_closed(key, c)]:
                closed_text[channel] = open_text.pop(channel)
        for slot in adapter.event_texts(endpoint, ev):
            if slot.where == "repeat":
                assert slot.text == full
            else:
                open_text[slot.channel] = open_text.get(slot.channel, "") + slot.text
    assert not open_text  # every channel was closed by the stream itself
    assert list(closed_text.values()) == [full]
    assert "bob@example.com" in full


@pytest.mark.parametrize(("provider", "endpoint", "body"), STREAM_CASES)
def test_setting_an_event_slot_reencodes_the_event(
    provider: str, endpoint: Endpoint, body: dict[str, Any]
) -> None:
    adapter = ADAPTERS[provider]
    events = offline_events(provider, endpoint, {**body, "stream": True})
    ev = next(
        e for e in events if any(s.where == "completion" for s in adapter.event_texts(endpoint, e))
    )
    [slot] = adapter.event_texts(endpoint, ev)
    assert not ev.changed and encode_event(ev) == ev.raw
    slot.set("[EMAIL]")
    assert ev.changed
    [again] = parse([encode_event(ev)])
    assert [s.text for s in adapter.event_texts(endpoint, again)] == ["[EMAIL]"]
    assert again.event == ev.event


def test_chat_tool_call_event_channels() -> None:
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "use the tool please"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            }
        ],
    }
    events = offline_events("openai", "chat.completions", body)
    channels = {s.channel for ev in events for s in OA.event_texts("chat.completions", ev)}
    assert channels == {("choice", 0, "tool", 0)}
    args = "".join(s.text for ev in events for s in OA.event_texts("chat.completions", ev))
    assert msgspec.json.decode(args) == {"q": "offline"}
    closes = [OA.event_closes("chat.completions", ev) for ev in events]
    assert [("choice", 0)] in closes and closes[-1] == [()]


def insert_text_event(
    adapter: Any, endpoint: Endpoint, events: list[StreamEvent], inserted: str
) -> list[bytes]:
    """Put a synthesized delta before the first event that closes a text channel."""
    out: list[bytes] = []
    done = False
    last_delta: StreamEvent | None = None
    for ev in events:
        slots = [s for s in adapter.event_texts(endpoint, ev) if s.where == "completion"]
        if slots:
            last_delta = ev
            channel = slots[0].channel
        closes = adapter.event_closes(endpoint, ev)
        if not done and last_delta is not None and any(channel_closed(k, channel) for k in closes):
            extra = adapter.text_event(endpoint, channel, inserted, last_delta)
            assert not extra.changed and encode_event(extra) == extra.raw
            out.append(extra.raw)
            done = True
        out.append(encode_event(ev))
    assert done
    return out


def test_text_event_parses_in_openai_chat_stream(openai_sdk: Callable[..., openai.OpenAI]) -> None:
    body = {**STREAM_CASES[0][2], "stream": True, "stream_options": {"include_usage": True}}
    events = offline_events("openai", "chat.completions", body)
    chunks = insert_text_event(OA, "chat.completions", events, " [HELD]")
    text = "".join(
        c.choices[0].delta.content or ""
        for c in openai_sdk(sse_response(chunks)).chat.completions.create(**body)
        if c.choices
    )
    assert text.endswith("now [HELD]")


def test_text_event_parses_in_openai_responses_stream(
    openai_sdk: Callable[..., openai.OpenAI],
) -> None:
    body = STREAM_CASES[1][2]
    events = offline_events("openai", "responses", {**body, "stream": True})
    chunks = insert_text_event(OA, "responses", events, " [HELD]")
    deltas: list[str] = []
    with openai_sdk(sse_response(chunks)).responses.stream(**body) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas).endswith("now [HELD]")
    assert final.usage is not None and final.usage.output_tokens > 0


def test_text_event_parses_in_anthropic_stream(
    anthropic_sdk: Callable[..., anthropic.Anthropic],
) -> None:
    body = STREAM_CASES[2][2]
    events = offline_events("anthropic", "messages", {**body, "stream": True})
    chunks = insert_text_event(AN, "messages", events, " [HELD]")
    with anthropic_sdk(sse_response(chunks)).messages.stream(**body) as stream:
        assert stream.get_final_text().endswith("now [HELD]")


def test_text_event_rejects_unknown_channels() -> None:
    like = StreamEvent(b"", None, {})
    for adapter, endpoint in ((OA, "chat.completions"), (OA, "responses"), (AN, "messages")):
        with pytest.raises(ValueError):
            adapter.text_event(endpoint, ("nope",), "x", like)  # type: ignore[arg-type]


def test_responses_repeat_slots_rewrite_final_copies() -> None:
    body = {**STREAM_CASES[1][2], "stream": True}
    events = offline_events("openai", "responses", body)
    for ev in events:
        for slot in OA.event_texts("responses", ev):
            slot.set(slot.text.replace("bob@example.com", "[EMAIL]"))
    final = copy.deepcopy(events[-1].data)
    assert final["type"] == "response.completed"
    assert "[EMAIL]" in final["response"]["output"][0]["content"][0]["text"]
    assert all(b"bob@example.com" not in encode_event(ev) for ev in events)


def test_lower_headers_decode_what_is_read_and_keep_the_last_of_a_repeated_name() -> None:
    from ironrt.providers.base import LowerHeaders, get_header

    raw = [(b"authorization", b"Bearer t"), (b"x-caf\xe9", b"cr\xe8me"), (b"x-two", b"1")]
    headers = LowerHeaders([*raw, (b"x-two", b"2")])
    assert headers["authorization"] == "Bearer t" and headers.get("x-two") == "2"
    assert headers.get("x-café") == "crème"  # latin-1 both ways, as the wire carries them
    assert "x-two" in headers and "X-Two" not in headers and 3 not in headers
    assert headers.get("missing") is None and headers.get("missing", "d") == "d"
    with pytest.raises(KeyError):
        headers["missing"]
    assert dict(headers) == {"authorization": "Bearer t", "x-café": "crème", "x-two": "2"}
    assert len(headers) == 3 and list(headers) == ["authorization", "x-café", "x-two"]
    assert get_header(headers, "x-absent") is None  # no scan for another casing
