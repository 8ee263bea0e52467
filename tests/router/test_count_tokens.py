"""Exact input counts: what is sent to the count endpoints, and that count + margin is
never below the input the same provider bills for the real call.

Translations are validated with the OpenAI SDK's own request types (pydantic, strict
about the item shapes), and the consistency checks go through a real `FakeUpstream` over
TCP: the count request and the real call are answered by the same fake.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
import msgspec
import pydantic
import pytest
from anthropic.types import MessageTokensCount
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import InputTokenCountParams
from openai.types.responses.input_token_count_response import InputTokenCountResponse

from ironrt.governance.flow import Endpoint, TokenUsage
from ironrt.providers import ANTHROPIC, OPENAI, ProviderAdapter
from ironrt.providers.offline import offline_response
from ironrt.providers.openai import chat_to_responses_input
from ironrt.router.counting import exact_input_tokens, offline_sender
from ironrt.testing import FakeUpstream

COUNT_PARAMS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(InputTokenCountParams)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

CHAT_FULL: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "temperature": 0.2,
    "n": 2,
    "stream": True,
    "max_completion_tokens": 50,
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "messages": [
        {"role": "system", "content": "You are terse. Answer in one line."},
        {"role": "developer", "content": [{"type": "text", "text": "Prefer metric units."}]},
        {
            "role": "user",
            "name": "alice",
            "content": [
                {"type": "text", "text": "What is in this picture, and the weather in Paris?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "18 C, light rain"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "A cat; 18 C and light rain in Paris."}],
        },
        {"role": "user", "content": "Thanks! Any tool for tomorrow?"},
    ],
}


async def _post(url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(path, json=body, headers=headers)
        response.raise_for_status()
        return response.json()


def _headers(adapter: ProviderAdapter) -> dict[str, str]:
    if adapter is ANTHROPIC:
        return {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
    return {"authorization": "Bearer sk-test"}


def _billed(url: str, adapter: ProviderAdapter, endpoint: Endpoint, body: dict[str, Any]) -> int:
    path = {"chat.completions": "/v1/chat/completions", "responses": "/v1/responses"}.get(
        endpoint, "/v1/messages"
    )
    real = {k: v for k, v in body.items() if k != "stream"}
    answer = asyncio.run(_post(url, path, real, _headers(adapter)))
    usage = adapter.usage_from_response(endpoint, answer)
    assert usage is not None
    return usage.input_tokens


def _counted(url: str, adapter: ProviderAdapter, endpoint: Endpoint, body: dict[str, Any]) -> int:
    async def send(path: str, payload: dict[str, Any]) -> tuple[int, Any] | None:
        return 200, await _post(url, path, payload, _headers(adapter))

    count = asyncio.run(exact_input_tokens(adapter, endpoint, body, send=send))
    assert count is not None
    return count


# ---- routing ------------------------------------------------------------------------------


def test_input_tokens_endpoint_is_routed() -> None:
    assert OPENAI.endpoint_for("POST", "/v1/responses/input_tokens") == "responses.input_tokens"
    assert OPENAI.endpoint_for("POST", "/v1/responses/input_tokens/") == "responses.input_tokens"
    assert OPENAI.endpoint_for("GET", "/v1/responses/input_tokens") == "unmetered"
    assert OPENAI.endpoint_for("POST", "/v1/responses") == "responses"
    # Its text is visible to policies (the PII policy redacts what a count would send).
    body = {"model": "gpt-4o", "instructions": "sys", "input": "hello"}
    texts = OPENAI.request_texts("responses.input_tokens", body, lambda: None)
    assert [t.text for t in texts] == ["sys", "hello"]


# ---- translation ------------------------------------------------------------------------------


def test_chat_translation_items() -> None:
    original = copy.deepcopy(CHAT_FULL)
    request = OPENAI.count_request("chat.completions", CHAT_FULL)
    assert original == CHAT_FULL  # the call's own body is untouched
    assert request is not None
    path, body = request
    assert path == "/v1/responses/input_tokens"
    COUNT_PARAMS.validate_python(body, strict=True)
    assert body["model"] == "gpt-4o-mini"
    assert not {"temperature", "n", "stream", "max_completion_tokens", "messages"} & set(body)
    assert body["input"] == [
        {"role": "system", "content": "You are terse. Answer in one line."},
        {"role": "developer", "content": [{"type": "input_text", "text": "Prefer metric units."}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "What is in this picture, and the weather in Paris?",
                },
                {
                    "type": "input_image",
                    "image_url": "https://example.com/cat.png",
                    "detail": "low",
                },
            ],
        },
        {"role": "assistant", "content": "Let me check."},
        {
            "type": "function_call",
            "call_id": "call_abc",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_abc", "output": "18 C, light rain"},
        {
            "role": "assistant",
            "content": [{"type": "output_text", "text": "A cat; 18 C and light rain in Paris."}],
        },
        {"role": "user", "content": "Thanks! Any tool for tomorrow?"},
    ]


def test_chat_translation_tools_and_choice() -> None:
    body = chat_to_responses_input(CHAT_FULL)
    assert body is not None
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
            "strict": False,
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["parallel_tool_calls"] is False
    allowed = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        },
    }
    body = chat_to_responses_input({**CHAT_FULL, "tool_choice": allowed})
    assert body is not None
    assert body["tool_choice"] == {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_weather"}],
    }
    body = chat_to_responses_input({**CHAT_FULL, "tool_choice": "required"})
    assert body is not None and body["tool_choice"] == "required"


def test_chat_translation_params() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    chat = {
        "model": "o4-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "reasoning_effort": "high",
        "verbosity": "low",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    }
    body = chat_to_responses_input(chat)
    assert body is not None
    COUNT_PARAMS.validate_python(body, strict=True)
    assert body["reasoning"] == {"effort": "high"}
    assert body["text"] == {
        "format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True},
        "verbosity": "low",
    }


def test_chat_translation_legacy_functions() -> None:
    chat = {
        "model": "gpt-4o",
        "functions": [{"name": "lookup", "parameters": {"type": "object", "properties": {}}}],
        "function_call": {"name": "lookup"},
        "messages": [
            {"role": "user", "content": "look it up"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "lookup", "arguments": '{"q": 1}'},
            },
            {"role": "function", "name": "lookup", "content": "found it"},
            {"role": "function", "name": "orphan", "content": "no call before me"},
        ],
    }
    body = chat_to_responses_input(chat)
    assert body is not None
    COUNT_PARAMS.validate_python(body, strict=True)
    items = body["input"]
    assert items[1] == {
        "type": "function_call",
        "call_id": "call_legacy_1",
        "name": "lookup",
        "arguments": '{"q": 1}',
    }
    assert items[2] == {
        "type": "function_call_output",
        "call_id": "call_legacy_1",
        "output": "found it",
    }
    assert items[3]["type"] == "function_call" and items[3]["name"] == "orphan"
    assert items[4] == {
        "type": "function_call_output",
        "call_id": items[3]["call_id"],
        "output": "no call before me",
    }
    assert body["tools"][0]["name"] == "lookup"
    assert body["tool_choice"] == {"type": "function", "name": "lookup"}


def test_chat_translation_tool_result_parts_refusal_and_file() -> None:
    chat = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "file", "file": {"file_id": "file-123"}}],
            },
            {"role": "assistant", "content": None, "refusal": "I cannot help with that."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "1"}]},
        ],
    }
    body = chat_to_responses_input(chat)
    assert body is not None
    COUNT_PARAMS.validate_python(body, strict=True)
    assert body["input"] == [
        {"role": "user", "content": [{"type": "input_file", "file_id": "file-123"}]},
        {
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": "I cannot help with that."}],
        },
        {"type": "custom_tool_call", "call_id": "c1", "name": "sql", "input": "SELECT 1"},
        {
            "type": "custom_tool_call_output",
            "call_id": "c1",
            "output": [{"type": "input_text", "text": "1"}],
        },
    ]


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        # Audio input has no Responses equivalent.
        (
            "chat.completions",
            {
                "model": "gpt-4o-audio-preview",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}
                        ],
                    }
                ],
            },
        ),
        # Search results join the billed input during the call.
        (
            "chat.completions",
            {
                "model": "gpt-4o-search-preview",
                "web_search_options": {},
                "messages": [{"role": "user", "content": "news"}],
            },
        ),
        (
            "responses",
            {"model": "gpt-4o", "input": "news", "tools": [{"type": "web_search"}]},
        ),
        ("responses", {"model": "gpt-4o", "prompt": {"id": "pmpt_1"}, "input": "x"}),
        (
            "messages",
            {
                "model": "claude-haiku-4-5",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "news"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
        ),
        ("embeddings", {"model": "text-embedding-3-small", "input": "x"}),
        ("models", {}),
        ("responses.input_tokens", {"model": "gpt-4o", "input": "x"}),
        ("messages.count_tokens", {"model": "claude-haiku-4-5", "messages": []}),
    ],
)
def test_uncountable_calls(endpoint: Endpoint, body: dict[str, Any]) -> None:
    adapter = ANTHROPIC if endpoint.startswith("messages") else OPENAI
    assert adapter.count_request(endpoint, body) is None
    send = offline_sender(adapter.name)
    assert asyncio.run(exact_input_tokens(adapter, endpoint, body, send=send)) is None


def test_passthrough_keeps_only_count_fields() -> None:
    responses = {
        "model": "gpt-4.1",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": "hi"}],
        "previous_response_id": "resp_1",
        "reasoning": {"effort": "low"},
        "stream": True,
        "store": False,
        "max_output_tokens": 5,
        "temperature": 0,
    }
    request = OPENAI.count_request("responses", responses)
    assert request is not None
    assert request[0] == "/v1/responses/input_tokens"
    assert request[1] == {
        k: responses[k]
        for k in ("model", "instructions", "input", "previous_response_id", "reasoning")
    }
    assert OPENAI.count_margin("responses", responses) == 0
    messages = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "stream": True,
        "temperature": 0.5,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tool_choice": {"type": "auto"},
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    }
    request = ANTHROPIC.count_request("messages", messages)
    assert request is not None
    assert request[0] == "/v1/messages/count_tokens"
    assert set(request[1]) == {"model", "system", "messages", "thinking", "tool_choice", "tools"}
    assert ANTHROPIC.count_margin("messages", messages) == 0


def test_chat_margin_covers_message_framing() -> None:
    chat = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
    assert OPENAI.count_margin("chat.completions", chat) == 8 + 2 * 4
    assert OPENAI.count_margin("chat.completions", CHAT_FULL) == 8 + 7 * 4 + 4 + len("alice") + 1


def test_count_from_response() -> None:
    assert OPENAI.count_from_response({"object": "response.input_tokens", "input_tokens": 7}) == 7
    assert ANTHROPIC.count_from_response({"input_tokens": 0}) == 0
    for bad in (None, {}, {"input_tokens": "7"}, {"input_tokens": True}, {"input_tokens": -1}):
        assert OPENAI.count_from_response(bad) is None


# ---- consistency with what the (fake) provider bills -----------------------------------------


RESPONSES_FULL: dict[str, Any] = {
    "model": "gpt-4.1-mini",
    "instructions": "You are a careful assistant who answers in French.",
    "input": [
        {"role": "developer", "content": "Keep it short."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Lyon?"}]},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "get_weather",
            "arguments": '{"city":"Lyon"}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": "21 C, sunny"},
    ],
    "tools": [{"type": "function", "name": "get_weather", "parameters": {}, "strict": False}],
}
MESSAGES_FULL: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "max_tokens": 64,
    "system": "You are a careful assistant. Use tools when asked about the weather.",
    "tools": [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ],
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "3 C, snow showers"},
                {"type": "text", "text": "And what should I wear?"},
            ],
        },
    ],
}


@pytest.mark.parametrize(
    ("adapter", "endpoint", "body"),
    [
        (OPENAI, "chat.completions", CHAT_FULL),
        (OPENAI, "chat.completions", {"model": "gpt-4o", "messages": [{"role": "user"}]}),
        (OPENAI, "responses", RESPONSES_FULL),
        (OPENAI, "responses", {"model": "gpt-4o", "input": "just a string", "instructions": "i"}),
        (ANTHROPIC, "messages", MESSAGES_FULL),
    ],
    ids=["chat-full", "chat-empty", "responses-full", "responses-string", "messages-full"],
)
def test_count_covers_billed_input_over_tcp(
    adapter: ProviderAdapter, endpoint: Endpoint, body: dict[str, Any]
) -> None:
    with FakeUpstream() as up:
        counted = _counted(up.url, adapter, endpoint, body)
        billed = _billed(up.url, adapter, endpoint, body)
        margin = adapter.count_margin(endpoint, body)
        assert counted >= billed
        assert counted - margin == billed  # the same text, counted the same way
        # A fixed-usage override is for calls; counting still follows the real text.
        up.usage = TokenUsage(input_tokens=1, output_tokens=1)
        assert _counted(up.url, adapter, endpoint, body) == counted


def test_count_answers_parse_with_the_sdks() -> None:
    with FakeUpstream() as up:
        request = OPENAI.count_request("chat.completions", CHAT_FULL)
        assert request is not None
        answer = asyncio.run(_post(up.url, *request, _headers(OPENAI)))
        assert InputTokenCountResponse.model_validate(answer, strict=True).input_tokens > 0
        request = ANTHROPIC.count_request("messages", MESSAGES_FULL)
        assert request is not None
        answer = asyncio.run(_post(up.url, *request, _headers(ANTHROPIC)))
        assert MessageTokensCount.model_validate(answer, strict=True).input_tokens > 0


def test_failed_count_falls_back() -> None:
    async def down(path: str, payload: dict[str, Any]) -> tuple[int, Any] | None:
        return None

    async def refused(path: str, payload: dict[str, Any]) -> tuple[int, Any] | None:
        return 429, {"error": {"message": "slow down"}}

    async def odd(path: str, payload: dict[str, Any]) -> tuple[int, Any] | None:
        return 200, {"tokens": 3}

    for send in (down, refused, odd):
        assert (
            asyncio.run(exact_input_tokens(OPENAI, "responses", RESPONSES_FULL, send=send)) is None
        )
    with FakeUpstream() as up:
        up.fail(times=1, status=500)

        async def real(path: str, payload: dict[str, Any]) -> tuple[int, Any] | None:
            async with httpx.AsyncClient(base_url=up.url, timeout=10) as client:
                response = await client.post(path, json=payload, headers=_headers(ANTHROPIC))
                return response.status_code, response.json()

        first = asyncio.run(exact_input_tokens(ANTHROPIC, "messages", MESSAGES_FULL, send=real))
        second = asyncio.run(exact_input_tokens(ANTHROPIC, "messages", MESSAGES_FULL, send=real))
        assert first is None and second is not None and second > 0


def test_offline_sender_counts_without_network() -> None:
    send = offline_sender("openai")
    counted = asyncio.run(exact_input_tokens(OPENAI, "chat.completions", CHAT_FULL, send=send))
    billed = _offline_billed("chat.completions", CHAT_FULL)
    assert counted == billed + OPENAI.count_margin("chat.completions", CHAT_FULL)
    send = offline_sender("anthropic")
    counted = asyncio.run(exact_input_tokens(ANTHROPIC, "messages", MESSAGES_FULL, send=send))
    assert counted == _offline_billed("messages", MESSAGES_FULL, "anthropic")


def _offline_billed(endpoint: Endpoint, body: dict[str, Any], provider: str = "openai") -> int:
    adapter = ANTHROPIC if provider == "anthropic" else OPENAI
    reply = offline_response(provider, endpoint, {k: v for k, v in body.items() if k != "stream"})
    usage = adapter.usage_from_response(endpoint, msgspec.json.decode(reply.body))
    assert reply.status == 200 and usage is not None
    return usage.input_tokens


# ---- property: any chat history ----------------------------------------------------------------

_TEXT = st.text(max_size=60)
_PART = st.builds(lambda t: {"type": "text", "text": t}, _TEXT)
_CONTENT = st.one_of(_TEXT, st.lists(_PART, max_size=3))
_IMAGE = st.just({"type": "image_url", "image_url": {"url": "https://example.com/i.png"}})
_USER_CONTENT = st.one_of(_TEXT, st.lists(st.one_of(_PART, _IMAGE), max_size=3))
_CALL = st.builds(
    lambda i, name, args: {
        "id": f"call_{i}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    },
    st.integers(0, 9),
    st.sampled_from(["a", "lookup", "get_weather"]),
    _TEXT,
)


def _message() -> st.SearchStrategy[dict[str, Any]]:
    named = st.one_of(st.none(), st.text(min_size=1, max_size=10))

    def with_name(msg: dict[str, Any], name: str | None) -> dict[str, Any]:
        return {**msg, "name": name} if name else msg

    return st.one_of(
        st.builds(lambda c, n: with_name({"role": "system", "content": c}, n), _CONTENT, named),
        st.builds(lambda c, n: with_name({"role": "developer", "content": c}, n), _CONTENT, named),
        st.builds(lambda c, n: with_name({"role": "user", "content": c}, n), _USER_CONTENT, named),
        st.builds(
            lambda c, calls: (
                {"role": "assistant", "content": c, "tool_calls": calls}
                if calls
                else {"role": "assistant", "content": c}
            ),
            st.one_of(st.none(), _CONTENT),
            st.lists(_CALL, max_size=2),
        ),
        st.builds(
            lambda c, i: {"role": "tool", "tool_call_id": f"call_{i}", "content": c},
            _CONTENT,
            st.integers(0, 9),
        ),
        st.builds(
            lambda c, f: {"role": "function", "name": f, "content": c},
            _TEXT,
            st.sampled_from(["a", "lookup"]),
        ),
        st.builds(
            lambda f, a: {
                "role": "assistant",
                "content": None,
                "function_call": {"name": f, "arguments": a},
            },
            st.sampled_from(["a", "lookup"]),
            _TEXT,
        ),
    )


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(_message(), min_size=1, max_size=8),
    tools=st.booleans(),
)
def test_chat_count_is_an_upper_bound(messages: list[dict[str, Any]], tools: bool) -> None:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages}
    if tools:
        body["tools"] = [WEATHER_TOOL]
    request = OPENAI.count_request("chat.completions", body)
    assert request is not None
    path, payload = request
    COUNT_PARAMS.validate_python(payload, strict=True)
    endpoint = OPENAI.endpoint_for("POST", path)
    assert endpoint == "responses.input_tokens"
    reply = offline_response("openai", endpoint, payload, path=path)
    counted = OPENAI.count_from_response(msgspec.json.decode(reply.body))
    assert counted is not None
    billed = _offline_billed("chat.completions", body)
    assert counted + OPENAI.count_margin("chat.completions", body) >= billed
    assert counted == billed  # every billed text is in the translation, unchanged


def _count_via_sender(
    base_url: str, key: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, Any] | None:
    """What the budget's count sender gets from Anthropic's count endpoint at `base_url`,
    with `key` as the daemon's key and `headers` as the agent's."""
    from ironrt.policies.settings import ReliabilitySettings
    from ironrt.providers.base import LowerHeaders
    from ironrt.router.egress import RouterConfig, count_sender
    from ironrt.transports.http import Upstream

    config = RouterConfig(
        offline=False,
        base_urls={"anthropic": base_url},
        keys=lambda name: ("ANTHROPIC_API_KEY", key) if name == "anthropic" else None,
    )

    async def count() -> tuple[int, Any] | None:
        upstream = Upstream(ReliabilitySettings())
        try:
            send = count_sender(config, upstream, ANTHROPIC, LowerHeaders(headers))
            return await send("/v1/messages/count_tokens", {"model": "m", "messages": []})
        finally:
            await upstream.aclose()

    return asyncio.run(count())


def test_the_budgets_count_request_carries_the_agents_headers_and_the_real_key() -> None:
    """The exact count at the budget margin goes out as the call would: the agent's own
    headers (a beta flag), the real key in place of the IC_TOKEN, JSON, no compression."""
    agent = [
        (b"x-api-key", b"ic-token-of-the-agent"),
        (b"anthropic-beta", b"tools-2025"),
        (b"content-type", b"text/plain"),
        (b"connection", b"keep-alive"),
    ]
    with FakeUpstream() as up:
        answer = _count_via_sender(up.url, "sk-real", agent)
        assert answer is not None and answer[0] == 200
        (request,) = up.requests
    sent = request.headers
    assert request.path == "/v1/messages/count_tokens"
    assert sent["x-api-key"] == "sk-real" and sent["anthropic-beta"] == "tools-2025"
    assert sent["content-type"] == "application/json" and sent["accept-encoding"] == "identity"
    assert "ic-token-of-the-agent" not in repr(sent)


def test_a_count_with_a_malformed_key_is_unknown_not_an_error() -> None:
    """Unknown (the byte bound stands); the call itself is answered with the reason."""
    assert _count_via_sender("http://127.0.0.1:9", "sk-real\r\nx-evil: 1", []) is None
