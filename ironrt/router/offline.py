"""The built-in offline provider: real API shapes, deterministic text, no network.

`--offline` runs (the quick start, demos, tests) must exercise exactly what a real
provider would: the router's streaming path, usage extraction, pricing and every policy.
So replies are byte-for-byte what the OpenAI and Anthropic APIs send (the official SDKs
parse them, their stream helpers accumulate them), only the words are made up:

- The text is a short fixed sentence echoing the start of the last user message, split
  into word chunks (one chunk per stream delta). Same request, same reply (ids included).
- Usage is realistic: input tokens are the request's text length / 4 rounded up (at
  least 1), output tokens are the chunks emitted. A request's output cap (`max_tokens`,
  `max_completion_tokens`, `max_output_tokens`) truncates the reply and reports it
  (`finish_reason: "length"`, `status: "incomplete"`, `stop_reason: "max_tokens"`).
- If the request declares tools and the last user message says "tool", the reply calls
  the first function tool with arguments made from its JSON schema (not truncated) —
  unless the request ends with that tool's result (a `tool` message, a
  `function_call_output` item, a user turn of `tool_result` blocks): then the reply is
  text, as a real model's final answer. A tool result does not replace the user message
  that asked for the tool, so looking at that message alone would call the tool forever
  and an agent's tool loop would never end.
- Chat streams send the usage chunk only when `stream_options.include_usage` is set, as
  the API does.
- The count endpoints (`/v1/messages/count_tokens`, `/v1/responses/input_tokens`) answer
  with the same text length / 4 the call would bill, so a count of a request (or of its
  translation into the count endpoint's format, which carries every text unchanged) is
  never below the call's billed input.

Everything here is a pure function of its arguments (plus the clock for `created`).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import sys
import time
from array import array
from dataclasses import dataclass
from typing import Any

import msgspec

from ironrt.governance.flow import Endpoint, TokenUsage
from ironrt.providers import ADAPTERS
from ironrt.providers.base import ProviderAdapter, dict_value, noop
from ironrt.router.sse import sse_bytes

__all__ = ["DEFAULT_MODELS", "OfflineReply", "offline_response"]

_ENCODE = msgspec.json.encode
_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"
_PREAMBLE = ["This", "is", "an", "offline", "reply", "from", "ironrt."]
_ECHO_WORDS = 12
_TOOL_WORD = re.compile(r"\btools?\b", re.IGNORECASE)
_ARG_PIECE = 8  # characters of tool-call arguments per stream delta
_SCHEMA_DEPTH = 32
_MAX_CHOICES = 128

#: Models the offline provider lists; all are priced by genai-prices.
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small"),
    "anthropic": ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-3-5-haiku-latest"),
}
_SERVED = frozenset(
    {
        "chat.completions",
        "responses",
        "embeddings",
        "messages",
        "messages.count_tokens",
        "responses.input_tokens",
    }
)
_EMBEDDING_DIMS = {"text-embedding-3-large": 3072}
_DEFAULT_DIMS = 1536


@dataclass(slots=True, frozen=True)
class OfflineReply:
    """An HTTP answer: a JSON `body`, or for streams the SSE `events` to send one by one."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    events: list[bytes] | None = None

    @property
    def stream(self) -> bool:
        return self.events is not None


@dataclass(slots=True)
class _Call:
    """What the reply is made of, derived once from the request."""

    model: str
    ident: str
    created: int
    chunks: list[str]
    truncated: bool
    usage: TokenUsage
    tool: tuple[str, str] | None  # (name, JSON arguments)
    choices: int


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def offline_response(
    adapter_name: str,
    endpoint: Endpoint,
    body: Any,
    *,
    path: str = "",
    usage: TokenUsage | None = None,
    now: float | None = None,
) -> OfflineReply:
    """Answer one request as the provider would; `usage` overrides the computed numbers.

    `path` is the request path (only `GET /v1/models/{id}` needs it).
    """
    adapter = ADAPTERS[adapter_name]
    created = int(time.time() if now is None else now)
    try:
        if endpoint == "models":
            return _json(adapter, _models(adapter_name, path, created))
        if endpoint not in _SERVED:
            return _error(adapter, 404, f"The offline provider does not serve {path or endpoint}.")
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object.")
        # Counts follow the request's text, never a `usage` override (that is for calls).
        if endpoint == "messages.count_tokens":
            _require(body, "model", "messages")
            return _json(adapter, {"input_tokens": _input_tokens(adapter, endpoint, body)})
        if endpoint == "responses.input_tokens":
            tokens = _input_tokens(adapter, endpoint, body)
            return _json(adapter, {"object": "response.input_tokens", "input_tokens": tokens})
        if endpoint == "embeddings":
            return _json(adapter, _embeddings(body, usage))
        call = _plan(adapter, endpoint, body, created, usage)
        stream = adapter.is_stream(endpoint, body)
        if endpoint == "chat.completions":
            if stream:
                options = dict_value(body.get("stream_options"))
                return _stream(adapter, _chat_events(call, options.get("include_usage") is True))
            return _json(adapter, _chat_body(call))
        if endpoint == "responses":
            if stream:
                return _stream(adapter, _responses_events(call, body))
            return _json(adapter, _responses_body(call, body, "completed"))
        if stream:
            return _stream(adapter, _messages_events(call))
        return _json(adapter, _messages_body(call))
    except _BadRequest as exc:
        return _error(adapter, 400, str(exc), exc.param)


# ---- common -------------------------------------------------------------------------------


def _headers(adapter: ProviderAdapter, content_type: str, ident: str = "") -> dict[str, str]:
    request_id = "req_" + (ident or hashlib.sha256(content_type.encode()).hexdigest()[:24])
    name = "request-id" if adapter.name == "anthropic" else "x-request-id"
    headers = {"content-type": content_type, name: request_id, "x-ironrt-offline": "1"}
    if content_type == _SSE:
        headers["cache-control"] = "no-cache"
    return headers


def _json(adapter: ProviderAdapter, payload: Any) -> OfflineReply:
    body = _ENCODE(payload)
    return OfflineReply(200, _headers(adapter, _JSON, hashlib.sha256(body).hexdigest()[:24]), body)


def _stream(adapter: ProviderAdapter, events: list[bytes]) -> OfflineReply:
    ident = hashlib.sha256(events[0]).hexdigest()[:24] if events else ""
    return OfflineReply(200, _headers(adapter, _SSE, ident), events=events)


def _error(
    adapter: ProviderAdapter, status: int, message: str, param: str | None = None
) -> OfflineReply:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    body = adapter.error_body(status, message, kind, None, param)
    return OfflineReply(status, _headers(adapter, _JSON), body)


def _require(body: dict[str, Any], *fields: str) -> None:
    for name in fields:
        if body.get(name) is None:
            raise _BadRequest(f"Missing required parameter: '{name}'.", name)


def _input_tokens(adapter: ProviderAdapter, endpoint: Endpoint, body: dict[str, Any]) -> int:
    """About 4 characters per token over every text the request sends."""
    chars = sum(len(slot.text) for slot in adapter.request_texts(endpoint, body, noop))
    return max(1, math.ceil(chars / 4))


def _last_user_text(endpoint: Endpoint, body: dict[str, Any]) -> str:
    """The text of the last user message (what the reply echoes)."""
    if endpoint == "responses":
        items = body.get("input")
        if isinstance(items, str):
            return items
        messages = [i for i in items or () if isinstance(i, dict) and i.get("role") == "user"]
    else:
        raw = body.get("messages")
        messages = [m for m in raw or () if isinstance(m, dict) and m.get("role") == "user"]
    if not messages:
        return ""
    content = messages[-1].get("content")
    if isinstance(content, str):
        return content
    texts = [
        part["text"]
        for part in content or ()
        if isinstance(part, dict)
        and part.get("type") in ("text", "input_text")
        and isinstance(part.get("text"), str)
    ]
    return " ".join(texts)


def _ends_with_tool_result(endpoint: Endpoint, body: dict[str, Any]) -> bool:
    """The request's last turn hands back a tool's result (so the model answers it)."""
    items = body.get("input") if endpoint == "responses" else body.get("messages")
    last = items[-1] if isinstance(items, list) and items else None
    if not isinstance(last, dict):
        return False
    if endpoint == "chat.completions":
        return last.get("role") in ("tool", "function")
    if endpoint == "responses":
        return last.get("type") in ("function_call_output", "custom_tool_call_output")
    content = last.get("content")
    return (
        last.get("role") == "user"
        and isinstance(content, list)
        and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )


def _schema_value(schema: Any, depth: int = 0) -> Any:
    """A plausible value for a JSON-schema (enough to make valid tool arguments); objects
    nested deeper than `_SCHEMA_DEPTH` are left empty (a recursion bound, not a limit any
    real tool reaches)."""
    schema = dict_value(schema)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        if depth >= _SCHEMA_DEPTH:
            return {}
        props = dict_value(schema.get("properties"))
        return {name: _schema_value(sub, depth + 1) for name, sub in props.items()}
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(
        str(kind), "offline"
    )


def _first_tool(endpoint: Endpoint, body: dict[str, Any]) -> tuple[str, str] | None:
    """(name, JSON arguments) of the first function tool the request declares."""
    for tool in body.get("tools") or ():
        if not isinstance(tool, dict):
            continue
        if endpoint == "chat.completions" and tool.get("type") == "function":
            function = dict_value(tool.get("function"))
            name, schema = function.get("name"), function.get("parameters")
        elif endpoint == "responses" and tool.get("type") == "function":
            name, schema = tool.get("name"), tool.get("parameters")
        elif endpoint == "messages" and tool.get("type") in (None, "custom"):
            name, schema = tool.get("name"), tool.get("input_schema")
        else:
            continue
        if isinstance(name, str) and name:
            args = _schema_value(schema or {"type": "object"})
            return name, _ENCODE(args if isinstance(args, dict) else {}).decode()
    return None


def _plan(
    adapter: ProviderAdapter,
    endpoint: Endpoint,
    body: dict[str, Any],
    created: int,
    usage: TokenUsage | None,
) -> _Call:
    required = ("model", "messages") if endpoint != "responses" else ("model", "input")
    _require(body, *required)
    if endpoint == "messages":
        _require(body, "max_tokens")
    model = adapter.request_model(endpoint, body)
    if not model:
        raise _BadRequest("'model' must be a string.", "model")
    limit = adapter.max_output_tokens(endpoint, body)
    if limit is not None and limit < 1:
        raise _BadRequest("The output token limit must be at least 1.", "max_tokens")
    user_text = _last_user_text(endpoint, body)
    asked = _TOOL_WORD.search(user_text) and not _ends_with_tool_result(endpoint, body)
    tool = _first_tool(endpoint, body) if asked else None
    choices = adapter.choices(endpoint, body)
    if choices > _MAX_CHOICES:  # as the API: and a reply per choice must stay bounded
        raise _BadRequest(f"'n' must be at most {_MAX_CHOICES}.", "n")
    if tool is not None:
        args = tool[1]
        pieces = [args[i : i + _ARG_PIECE] for i in range(0, len(args), _ARG_PIECE)]
        words: list[str] = pieces
        truncated = False
        output = len(pieces) + 1
    else:
        echo = user_text.split()[:_ECHO_WORDS]
        words = [*_PREAMBLE, *(["You", "said:", *echo] if echo else [])]
        words = [words[0]] + [" " + w for w in words[1:]]
        truncated = limit is not None and limit < len(words)
        if truncated and limit is not None:
            words = words[:limit]
        output = len(words)
    ident = hashlib.sha256(_ENCODE(body)).hexdigest()[:24]
    computed = TokenUsage(
        input_tokens=_input_tokens(adapter, endpoint, body), output_tokens=output * choices
    )
    return _Call(model, ident, created, words, truncated, usage or computed, tool, choices)


# ---- OpenAI chat completions ----------------------------------------------------------------


def _chat_usage(u: TokenUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": u.cached_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_finish(call: _Call) -> str:
    if call.tool is not None:
        return "tool_calls"
    return "length" if call.truncated else "stop"


def _chat_body(call: _Call) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if call.tool is not None:
        name, args = call.tool
        message["tool_calls"] = [
            {
                "id": f"call_{call.ident[:24]}",
                "type": "function",
                "function": {"name": name, "arguments": args},
            }
        ]
    else:
        message["content"] = "".join(call.chunks)
    message["annotations"] = []
    finish = _chat_finish(call)
    return {
        "id": f"chatcmpl-{call.ident}",
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": [
            {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
            for i in range(call.choices)
        ],
        "usage": _chat_usage(call.usage),
        "service_tier": "default",
        "system_fingerprint": "fp_ironrt_offline",
    }


def _chat_events(call: _Call, include_usage: bool) -> list[bytes]:
    head = {
        "id": f"chatcmpl-{call.ident}",
        "object": "chat.completion.chunk",
        "created": call.created,
        "model": call.model,
        "service_tier": "default",
        "system_fingerprint": "fp_ironrt_offline",
    }

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {
            **head,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if include_usage:
            data["usage"] = None
        return sse_bytes(data)

    events: list[bytes] = []
    for i in range(call.choices):
        if call.tool is not None:
            name, _args = call.tool
            first = {
                "index": 0,
                "id": f"call_{call.ident[:24]}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            delta = {"role": "assistant", "content": None, "tool_calls": [first], "refusal": None}
            events.append(chunk(i, delta))
        else:
            events.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}))
    for piece in call.chunks:
        for i in range(call.choices):
            if call.tool is not None:
                tool_delta = {"index": 0, "function": {"arguments": piece}}
                events.append(chunk(i, {"tool_calls": [tool_delta]}))
            else:
                events.append(chunk(i, {"content": piece}))
    finish = _chat_finish(call)
    events.extend(chunk(i, {}, finish) for i in range(call.choices))
    if include_usage:
        events.append(sse_bytes({**head, "choices": [], "usage": _chat_usage(call.usage)}))
    events.append(b"data: [DONE]\n\n")
    return events


# ---- OpenAI Responses -----------------------------------------------------------------------


def _responses_usage(u: TokenUsage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cached_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def _responses_item(call: _Call, status: str, text: str | None = None) -> dict[str, Any]:
    """The one output item: a message, or a function call; `text` None means complete."""
    if call.tool is not None:
        name, args = call.tool
        return {
            "id": f"fc_{call.ident}",
            "type": "function_call",
            "status": status,
            "arguments": args if text is None else text,
            "call_id": f"call_{call.ident[:24]}",
            "name": name,
        }
    content = [] if text == "" else [_output_text("".join(call.chunks) if text is None else text)]
    return {
        "id": f"msg_{call.ident}",
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _responses_body(call: _Call, body: dict[str, Any], status: str) -> dict[str, Any]:
    """The response object; `status` "in_progress" gives the one `response.created` sends."""
    done = status != "in_progress"
    if done and call.truncated:
        status = "incomplete"
    item_status = "incomplete" if status == "incomplete" else "completed"
    return {
        "id": f"resp_{call.ident}",
        "object": "response",
        "created_at": call.created,
        "status": status,
        "background": False,
        "completed_at": call.created if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": call.model,
        "output": [_responses_item(call, item_status)] if done else [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text", {"format": {"type": "text"}}),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": _responses_usage(call.usage) if done else None,
        "user": None,
        "metadata": body.get("metadata", {}),
    }


def _responses_events(call: _Call, body: dict[str, Any]) -> list[bytes]:
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(sse_bytes({"type": kind, "sequence_number": len(events), **fields}, kind))

    start = _responses_body(call, body, "in_progress")
    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    final = _responses_body(call, body, "completed")
    item = final["output"][0]
    emit(
        "response.output_item.added", output_index=0, item=_responses_item(call, "in_progress", "")
    )
    where = {"item_id": item["id"], "output_index": 0}
    if call.tool is not None:
        for piece in call.chunks:
            emit("response.function_call_arguments.delta", **where, delta=piece)
        emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
    else:
        text = item["content"][0]["text"]
        emit("response.content_part.added", **where, content_index=0, part=_output_text(""))
        for piece in call.chunks:
            emit("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
        emit("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
        emit("response.content_part.done", **where, content_index=0, part=_output_text(text))
    emit("response.output_item.done", output_index=0, item=item)
    emit(f"response.{final['status']}", response=final)
    return events


# ---- Anthropic messages -----------------------------------------------------------------------


def _messages_usage(u: TokenUsage) -> dict[str, Any]:
    return {
        "input_tokens": max(u.input_tokens - u.cached_tokens - u.cache_write_tokens, 0),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": u.output_tokens,
        "service_tier": "standard",
    }


def _stop_reason(call: _Call) -> str:
    if call.tool is not None:
        return "tool_use"
    return "max_tokens" if call.truncated else "end_turn"


def _messages_block(call: _Call) -> dict[str, Any]:
    if call.tool is not None:
        name, args = call.tool
        tool_input = msgspec.json.decode(args)
        return {"type": "tool_use", "id": f"toolu_{call.ident}", "name": name, "input": tool_input}
    return {"type": "text", "text": "".join(call.chunks)}


def _messages_body(call: _Call) -> dict[str, Any]:
    return {
        "id": f"msg_{call.ident}",
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [_messages_block(call)],
        "stop_reason": _stop_reason(call),
        "stop_sequence": None,
        "usage": _messages_usage(call.usage),
    }


def _messages_events(call: _Call) -> list[bytes]:
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(sse_bytes({"type": kind, **fields}, kind))

    start = _messages_body(call)
    start_usage = {**start["usage"], "output_tokens": min(1, call.usage.output_tokens)}
    emit(
        "message_start", message={**start, "content": [], "stop_reason": None, "usage": start_usage}
    )
    if call.tool is not None:
        block = {**_messages_block(call), "input": {}}
        emit("content_block_start", index=0, content_block=block)
        emit("ping")
        for piece in call.chunks:
            emit(
                "content_block_delta",
                index=0,
                delta={"type": "input_json_delta", "partial_json": piece},
            )
    else:
        emit("content_block_start", index=0, content_block={"type": "text", "text": ""})
        emit("ping")
        for piece in call.chunks:
            emit("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
    emit("content_block_stop", index=0)
    usage = {k: v for k, v in start["usage"].items() if k != "service_tier"}
    emit(
        "message_delta",
        delta={"stop_reason": _stop_reason(call), "stop_sequence": None},
        usage=usage,
    )
    emit("message_stop")
    return events


# ---- embeddings and models ----------------------------------------------------------------


def _vector(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for `text` (same text, same vector)."""
    raw = array("H", hashlib.shake_256(text.encode()).digest(dims * 2))
    values = [v / 32767.5 - 1.0 for v in raw]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _embeddings(body: dict[str, Any], usage: TokenUsage | None) -> dict[str, Any]:
    _require(body, "model", "input")
    model = body["model"]
    if not isinstance(model, str):
        raise _BadRequest("'model' must be a string.", "model")
    value = body["input"]
    inputs: list[tuple[str, int]]
    if isinstance(value, str):
        inputs = [(value, max(1, math.ceil(len(value) / 4)))]
    elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        inputs = [(" ".join(map(str, value)), len(value))]
    elif isinstance(value, list) and value:
        inputs = []
        for item in value:
            if isinstance(item, str):
                inputs.append((item, max(1, math.ceil(len(item) / 4))))
            elif isinstance(item, list) and all(isinstance(v, int) for v in item):
                inputs.append((" ".join(map(str, item)), max(1, len(item))))
            else:
                raise _BadRequest("'input' must be a string or an array of strings.", "input")
    else:
        raise _BadRequest("'input' must be a non-empty string or array.", "input")
    dims = body.get("dimensions")
    if dims is None:
        dims = _EMBEDDING_DIMS.get(model, _DEFAULT_DIMS)
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 8192:
        raise _BadRequest("'dimensions' must be a positive integer.", "dimensions")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, (text, _tokens) in enumerate(inputs):
        vector = _vector(text, dims)
        embedding: Any = vector
        if as_base64:
            packed = array("f", vector)
            if sys.byteorder != "little":  # the API sends little-endian float32
                packed.byteswap()
            embedding = base64.b64encode(packed.tobytes()).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = usage.input_tokens if usage else sum(t for _, t in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _models(adapter_name: str, path: str, created: int) -> dict[str, Any]:
    stem = path.split("?", 1)[0].rstrip("/")
    wanted = stem[len("/v1/models/") :] if stem.startswith("/v1/models/") else None
    ids = [wanted] if wanted else list(DEFAULT_MODELS[adapter_name])
    if adapter_name == "anthropic":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
        described: list[dict[str, Any]] = [
            {
                "type": "model",
                "id": m,
                "display_name": m.replace("-", " ").title(),
                "created_at": stamp,
                "lifecycle": "active",
            }
            for m in ids
        ]
        if wanted:
            return described[0]
        return {"data": described, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
    models: list[dict[str, Any]] = [
        {"id": m, "object": "model", "created": created, "owned_by": "ironrt-offline"} for m in ids
    ]
    return models[0] if wanted else {"object": "list", "data": models}
