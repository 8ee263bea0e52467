"""The offline provider answers in the APIs' exact shapes, deterministically.

Every body and stream event is validated with the SDKs' own pydantic models
(`model_validate`, which checks required fields and types, stricter than the SDKs'
lenient parsing), so a shape drift shows up here first.
"""

from __future__ import annotations

import base64
import math
from array import array
from typing import Any

import msgspec
import pydantic
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from ironrt.governance.flow import Endpoint, TokenUsage
from ironrt.providers.offline import DEFAULT_MODELS, OfflineReply, offline_response
from ironrt.router.sse import SSEParser

RESPONSE_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
ANTHROPIC_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)

PROMPT = "Please summarise the quarterly report for the finance team today"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
RESP = {"model": "gpt-4o-mini", "input": PROMPT}
MSG = {
    "model": "claude-haiku-4-5",
    "max_tokens": 200,
    "messages": [{"role": "user", "content": PROMPT}],
}


def body_of(reply: OfflineReply) -> Any:
    assert reply.events is None
    return msgspec.json.decode(reply.body)


def events_of(reply: OfflineReply) -> list[tuple[str | None, Any]]:
    assert reply.events is not None and reply.headers["content-type"].startswith(
        "text/event-stream"
    )
    parser = SSEParser()
    out = []
    for raw in reply.events:
        [event] = parser.feed(raw)  # one complete event per chunk
        out.append((event.event, event.data))
    return out


def test_chat_completion() -> None:
    reply = offline_response("openai", "chat.completions", CHAT)
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    body = body_of(reply)
    completion = ChatCompletion.model_validate(body)
    assert completion.model == "gpt-4o-mini"
    text = completion.choices[0].message.content
    assert text is not None and text.startswith("This is an offline reply")
    assert "quarterly report" in text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == math.ceil(len(PROMPT) / 4)
    assert completion.usage.completion_tokens == len(text.split())


def test_chat_is_deterministic_and_counts_every_text() -> None:
    first = body_of(offline_response("openai", "chat.completions", CHAT, now=1000))
    second = body_of(offline_response("openai", "chat.completions", CHAT, now=1000))
    assert first == second and first["created"] == 1000
    system = {**CHAT, "messages": [{"role": "system", "content": "x" * 400}, *CHAT["messages"]]}  # type: ignore[list-item]
    more = body_of(offline_response("openai", "chat.completions", system))
    assert more["usage"]["prompt_tokens"] == math.ceil((400 + len(PROMPT)) / 4)


def test_chat_max_tokens_truncates_and_n_multiplies() -> None:
    body = body_of(
        offline_response("openai", "chat.completions", {**CHAT, "max_tokens": 3, "n": 2})
    )
    completion = ChatCompletion.model_validate(body)
    assert [c.finish_reason for c in completion.choices] == ["length", "length"]
    assert completion.choices[1].message.content == "This is an"
    assert completion.usage is not None and completion.usage.completion_tokens == 6


def test_chat_stream_shape() -> None:
    events = events_of(offline_response("openai", "chat.completions", {**CHAT, "stream": True}))
    assert events[-1] == (None, None)  # data: [DONE]
    chunks = [ChatCompletionChunk.model_validate(data) for _, data in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert (
        text
        == body_of(offline_response("openai", "chat.completions", CHAT))["choices"][0]["message"][
            "content"
        ]
    )
    assert len(chunks) == len(text.split()) + 2  # role chunk, one per word, finish chunk


def test_chat_stream_usage_chunk_only_when_asked() -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    events = events_of(offline_response("openai", "chat.completions", body))
    last = ChatCompletionChunk.model_validate(events[-2][1])
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens > 0
    assert all("usage" in data and data["usage"] is None for _, data in events[:-2])


def test_responses_body_and_truncation() -> None:
    response = Response.model_validate(body_of(offline_response("openai", "responses", RESP)))
    assert response.status == "completed" and "quarterly" in response.output_text
    assert response.usage is not None and response.usage.input_tokens == math.ceil(len(PROMPT) / 4)
    short = {**RESP, "max_output_tokens": 2, "instructions": "be brief"}
    cut = Response.model_validate(body_of(offline_response("openai", "responses", short)))
    assert cut.status == "incomplete" and cut.output_text == "This is"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert cut.instructions == "be brief"


def test_responses_stream_sequence() -> None:
    events = events_of(offline_response("openai", "responses", {**RESP, "stream": True}))
    parsed = [RESPONSE_EVENT.validate_python(data) for _, data in events]
    kinds = [e.type for e in parsed]
    assert [name for name, _ in events] == kinds
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    deltas = "".join(e.delta for e in parsed if e.type == "response.output_text.delta")
    assert parsed[-1].response.output_text == deltas
    cut = events_of(
        offline_response("openai", "responses", {**RESP, "stream": True, "max_output_tokens": 1})
    )
    assert cut[-1][0] == "response.incomplete"


def test_anthropic_message_and_stream() -> None:
    message = Message.model_validate(body_of(offline_response("anthropic", "messages", MSG)))
    assert message.stop_reason == "end_turn" and message.model == "claude-haiku-4-5"
    assert message.usage.input_tokens == math.ceil(len(PROMPT) / 4)
    events = events_of(offline_response("anthropic", "messages", {**MSG, "stream": True}))
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    parsed = [ANTHROPIC_EVENT.validate_python(data) for _, data in events if data["type"] != "ping"]
    assert [e.type for e in parsed] == [n for n in names if n != "ping"]
    text = "".join(e.delta.text for e in parsed if e.type == "content_block_delta")
    assert text == message.content[0].text  # type: ignore[union-attr]
    assert parsed[-2].usage.output_tokens == message.usage.output_tokens  # type: ignore[union-attr]


def test_anthropic_max_tokens() -> None:
    cut = Message.model_validate(
        body_of(offline_response("anthropic", "messages", {**MSG, "max_tokens": 4}))
    )
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 4
    missing = offline_response(
        "anthropic", "messages", {k: v for k, v in MSG.items() if k != "max_tokens"}
    )
    assert missing.status == 400
    error = msgspec.json.decode(missing.body)
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in error["error"]["message"]


def test_count_tokens() -> None:
    reply = offline_response(
        "anthropic", "messages.count_tokens", {k: v for k, v in MSG.items() if k != "max_tokens"}
    )
    assert MessageTokensCount.model_validate(body_of(reply)).input_tokens == math.ceil(
        len(PROMPT) / 4
    )


def test_embeddings_float_and_base64() -> None:
    body = {"model": "text-embedding-3-small", "input": ["alpha", "beta"], "dimensions": 16}
    floats = CreateEmbeddingResponse.model_validate(
        body_of(offline_response("openai", "embeddings", body))
    )
    assert [len(d.embedding) for d in floats.data] == [16, 16]
    assert math.isclose(sum(v * v for v in floats.data[0].embedding), 1.0, rel_tol=1e-9)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == 2 + 1  # ceil(5 / 4) + ceil(4 / 4)
    encoded = body_of(
        offline_response("openai", "embeddings", {**body, "encoding_format": "base64"})
    )
    vector = array("f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert list(vector) == pytest.approx(floats.data[0].embedding, rel=1e-6)
    default = body_of(
        offline_response("openai", "embeddings", {"model": "text-embedding-3-small", "input": "x"})
    )
    assert len(default["data"][0]["embedding"]) == 1536
    tokens = body_of(offline_response("openai", "embeddings", {"model": "m", "input": [1, 2, 3]}))
    assert tokens["usage"]["prompt_tokens"] == 3
    bad = offline_response("openai", "embeddings", {"model": "m", "input": [{"x": 1}]})
    assert bad.status == 400 and msgspec.json.decode(bad.body)["error"]["param"] == "input"


def test_models() -> None:
    listing = body_of(offline_response("openai", "models", None, path="/v1/models"))
    assert [Model.model_validate(m).id for m in listing["data"]] == list(DEFAULT_MODELS["openai"])
    one = body_of(offline_response("openai", "models", None, path="/v1/models/gpt-4o"))
    assert Model.model_validate(one).id == "gpt-4o"
    claude = body_of(offline_response("anthropic", "models", None, path="/v1/models"))
    assert claude["data"][0]["type"] == "model" and not claude["has_more"]


def tool_request(endpoint: Endpoint) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"enum": ["c", "f"]},
        },
    }
    ask = "call the tool for Paris"
    if endpoint == "chat.completions":
        return {
            **CHAT,
            "messages": [{"role": "user", "content": ask}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": schema}}],
        }
    if endpoint == "responses":
        return {
            **RESP,
            "input": ask,
            "tools": [{"type": "function", "name": "weather", "parameters": schema}],
        }
    return {
        **MSG,
        "messages": [{"role": "user", "content": ask}],
        "tools": [{"name": "weather", "input_schema": schema}],
    }


EXPECTED_ARGS = {"city": "offline", "days": 1, "unit": "c"}


def test_tool_calls_non_stream() -> None:
    chat = ChatCompletion.model_validate(
        body_of(offline_response("openai", "chat.completions", tool_request("chat.completions")))
    )
    call = chat.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert chat.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "weather"  # type: ignore[union-attr]
    assert msgspec.json.decode(call.function.arguments) == EXPECTED_ARGS  # type: ignore[union-attr]
    response = Response.model_validate(
        body_of(offline_response("openai", "responses", tool_request("responses")))
    )
    item = response.output[0]
    assert item.type == "function_call" and msgspec.json.decode(item.arguments) == EXPECTED_ARGS
    message = Message.model_validate(
        body_of(offline_response("anthropic", "messages", tool_request("messages")))
    )
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use" and block.input == EXPECTED_ARGS


def test_tool_calls_stream() -> None:
    chat = events_of(
        offline_response(
            "openai", "chat.completions", {**tool_request("chat.completions"), "stream": True}
        )
    )
    chunks = [ChatCompletionChunk.model_validate(d) for _, d in chat[:-1]]
    args = "".join(
        (c.choices[0].delta.tool_calls or [])[0].function.arguments or ""  # type: ignore[union-attr]
        for c in chunks
        if c.choices[0].delta.tool_calls
    )
    assert msgspec.json.decode(args) == EXPECTED_ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    responses = events_of(
        offline_response("openai", "responses", {**tool_request("responses"), "stream": True})
    )
    parsed = [RESPONSE_EVENT.validate_python(d) for _, d in responses]
    args = "".join(e.delta for e in parsed if e.type == "response.function_call_arguments.delta")
    assert msgspec.json.decode(args) == EXPECTED_ARGS
    anthropic_events = events_of(
        offline_response("anthropic", "messages", {**tool_request("messages"), "stream": True})
    )
    parsed = [
        ANTHROPIC_EVENT.validate_python(d) for _, d in anthropic_events if d["type"] != "ping"
    ]
    args = "".join(e.delta.partial_json for e in parsed if e.type == "content_block_delta")
    assert msgspec.json.decode(args) == EXPECTED_ARGS


def test_usage_override() -> None:
    usage = TokenUsage(
        input_tokens=1000, output_tokens=50, cached_tokens=600, cache_write_tokens=100
    )
    chat = body_of(offline_response("openai", "chat.completions", CHAT, usage=usage))
    assert chat["usage"]["prompt_tokens"] == 1000
    assert chat["usage"]["prompt_tokens_details"]["cached_tokens"] == 600
    message = body_of(offline_response("anthropic", "messages", MSG, usage=usage))
    assert message["usage"]["input_tokens"] == 300  # Anthropic's input excludes the cache
    assert message["usage"]["cache_read_input_tokens"] == 600


@pytest.mark.parametrize(
    ("provider", "endpoint", "body", "status"),
    [
        ("openai", "unmetered", {}, 404),
        ("openai", "chat.completions", {"model": "m"}, 400),
        ("openai", "chat.completions", [1, 2], 400),
        ("openai", "responses", {"input": "x"}, 400),
        ("anthropic", "messages", {**MSG, "max_tokens": 0}, 400),
    ],
)
def test_errors_are_provider_shaped(
    provider: str, endpoint: Endpoint, body: Any, status: int
) -> None:
    reply = offline_response(provider, endpoint, body)
    assert reply.status == status and reply.events is None
    error = msgspec.json.decode(reply.body)
    if provider == "openai":
        assert set(error["error"]) == {"message", "type", "param", "code"}
    else:
        assert error["type"] == "error" and error["error"]["message"]
