"""The offline provider's common ground: its reply type, and the plan of an answer that
the conversational surfaces (chat, Responses, messages) then shape their own way.

`--offline` runs (the quick start, demos, tests) must exercise exactly what a real
provider would: the router's streaming path, usage extraction, pricing and every policy.
So replies are byte-for-byte what the APIs send (the official SDKs parse them, their
stream helpers accumulate them), only the words are made up:

- The text is a short fixed sentence echoing the start of the last user message, split
  into word chunks (one chunk per stream delta). Same request, same reply (ids included).
- Usage is realistic: input tokens are the request's text length / 4 rounded up (at
  least 1), output tokens are the chunks emitted. A request's output cap truncates the
  reply and reports it (`finish_reason: "length"`, `status: "incomplete"`,
  `stop_reason: "max_tokens"`).
- If the request declares tools and the last user message says "tool", the reply calls
  the first function tool with arguments made from its JSON schema (not truncated),
  unless the request ends with that tool's result: then the reply is text, as a real
  model's final answer. A tool result does not replace the user message that asked for
  the tool, so looking at that message alone would call the tool forever and an agent's
  tool loop would never end.

Everything here is a pure function of its arguments (plus the clock for `created`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ironrt.governance.flow import TextSlot, TokenUsage
from ironrt.providers.texts import dict_value, noop

if TYPE_CHECKING:
    from ironrt.providers.base import ProviderAdapter

__all__ = [
    "BadRequest",
    "Call",
    "Conversation",
    "OfflineCall",
    "OfflineReply",
    "error_reply",
    "input_tokens",
    "json_reply",
    "plan",
    "require",
    "stream_reply",
    "user_text",
]

_ENCODE = msgspec.json.encode
_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"
_PREAMBLE = ["This", "is", "an", "offline", "reply", "from", "ironrt."]
_ECHO_WORDS = 12
_TOOL_WORD = re.compile(r"\btools?\b", re.IGNORECASE)
_ARG_PIECE = 8  # characters of tool-call arguments per stream delta
_SCHEMA_DEPTH = 32
_MAX_CHOICES = 128


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


@dataclass(slots=True, frozen=True)
class OfflineCall:
    """What an answer depends on besides the body: the endpoint and the request path (the
    provider's own, its router prefix removed), a usage that overrides the computed one,
    the clock."""

    endpoint: str
    path: str
    usage: TokenUsage | None
    created: int


class BadRequest(Exception):
    """The request is one the provider would answer 400 (`param` names the field)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _headers(adapter: ProviderAdapter, content_type: str, ident: str = "") -> dict[str, str]:
    request_id = "req_" + (ident or hashlib.sha256(content_type.encode()).hexdigest()[:24])
    name = "request-id" if adapter.entry.family == "anthropic" else "x-request-id"
    headers = {"content-type": content_type, name: request_id, "x-ironrt-offline": "1"}
    if content_type == _SSE:
        headers["cache-control"] = "no-cache"
    return headers


def json_reply(adapter: ProviderAdapter, payload: Any) -> OfflineReply:
    body = _ENCODE(payload)
    return OfflineReply(200, _headers(adapter, _JSON, hashlib.sha256(body).hexdigest()[:24]), body)


def stream_reply(adapter: ProviderAdapter, events: list[bytes]) -> OfflineReply:
    ident = hashlib.sha256(events[0]).hexdigest()[:24] if events else ""
    return OfflineReply(200, _headers(adapter, _SSE, ident), events=events)


def error_reply(
    adapter: ProviderAdapter, status: int, message: str, param: str | None = None
) -> OfflineReply:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    body = adapter.error_body(status, message, kind, None, param)
    return OfflineReply(status, _headers(adapter, _JSON), body)


def require(body: Any, *fields: str) -> dict[str, Any]:
    """The body as a JSON object holding `fields`, or BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    for name in fields:
        if body.get(name) is None:
            raise BadRequest(f"Missing required parameter: '{name}'.", name)
    return body


class _Texts(Protocol):
    def request_texts(
        self, body: dict[str, Any], on_change: Callable[[], None]
    ) -> list[TextSlot]: ...


def input_tokens(surface: _Texts, body: dict[str, Any]) -> int:
    """About 4 characters per token over every text the request sends."""
    chars = sum(len(slot.text) for slot in surface.request_texts(body, noop))
    return max(1, math.ceil(chars / 4))


def user_text(messages: Any) -> str:
    """The text of the last user message of a chat or messages list (what a reply echoes)."""
    users = [m for m in messages or () if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content")
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


class Conversation(Protocol):
    """What planning an answer asks of a conversational surface."""

    #: Fields the API requires of a request.
    required: tuple[str, ...]

    def request_texts(
        self, body: dict[str, Any], on_change: Callable[[], None]
    ) -> list[TextSlot]: ...

    def max_output_tokens(self, body: Any) -> int | None: ...

    def choices(self, body: Any) -> int: ...

    def last_user_text(self, body: dict[str, Any]) -> str: ...

    def ends_with_tool_result(self, body: dict[str, Any]) -> bool:
        """The request's last turn hands back a tool's result (so the model answers it)."""
        ...

    def function_tool(self, tool: dict[str, Any]) -> tuple[Any, Any] | None:
        """(name, JSON schema) of a declared tool the model may call, else None."""
        ...


@dataclass(slots=True)
class Call:
    """What an answer is made of, derived once from the request."""

    model: str
    ident: str
    created: int
    chunks: list[str]
    truncated: bool
    usage: TokenUsage
    tool: tuple[str, str] | None  # (name, JSON arguments)
    choices: int


def _first_tool(surface: Conversation, body: dict[str, Any]) -> tuple[str, str] | None:
    for tool in body.get("tools") or ():
        found = surface.function_tool(tool) if isinstance(tool, dict) else None
        if found is None:
            continue
        name, schema = found
        if isinstance(name, str) and name:
            args = _schema_value(schema or {"type": "object"})
            return name, _ENCODE(args if isinstance(args, dict) else {}).decode()
    return None


def plan(surface: Conversation, raw: Any, call: OfflineCall) -> Call:
    body = require(raw, *surface.required)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a string.", "model")
    limit = surface.max_output_tokens(body)
    if limit is not None and limit < 1:
        raise BadRequest("The output token limit must be at least 1.", "max_tokens")
    said = surface.last_user_text(body)
    asked = _TOOL_WORD.search(said) and not surface.ends_with_tool_result(body)
    tool = _first_tool(surface, body) if asked else None
    choices = surface.choices(body)
    if choices > _MAX_CHOICES:  # as the API: and a reply per choice must stay bounded
        raise BadRequest(f"'n' must be at most {_MAX_CHOICES}.", "n")
    if tool is not None:
        args = tool[1]
        words = [args[i : i + _ARG_PIECE] for i in range(0, len(args), _ARG_PIECE)]
        truncated = False
        output = len(words) + 1
    else:
        echo = said.split()[:_ECHO_WORDS]
        words = [*_PREAMBLE, *(["You", "said:", *echo] if echo else [])]
        words = [words[0]] + [" " + w for w in words[1:]]
        truncated = limit is not None and limit < len(words)
        if truncated and limit is not None:
            words = words[:limit]
        output = len(words)
    ident = hashlib.sha256(_ENCODE(body)).hexdigest()[:24]
    computed = TokenUsage(input_tokens=input_tokens(surface, body), output_tokens=output * choices)
    return Call(model, ident, call.created, words, truncated, call.usage or computed, tool, choices)
