"""The Anthropic Messages API as the router sees it.

Shapes follow the official API (and what the `anthropic` SDK parses):

- Auth is `x-api-key: <key>`, or `Authorization: Bearer <token>` for
  `ANTHROPIC_AUTH_TOKEN`; errors are `{"type": "error", "error": {"type", "message"}}`
  with a type fixed by the HTTP status; a mid-stream failure is an `event: error` event
  with the same body, on which the SDK raises an `APIStatusError`.
- Streams are named events (`message_start`, `content_block_*`, `ping`, `message_delta`,
  `message_stop`) and end with `message_stop` (no `[DONE]`); usage comes in
  `message_start` and, cumulative, in `message_delta`.
- Usage: `input_tokens` EXCLUDES cache reads and writes, so the adapter stores
  `input_tokens + cache_read_input_tokens + cache_creation_input_tokens` as the total.

Channels: `("block", i, "text")` for text and `("block", i, "json")` for the partial JSON
of a tool call's input; `content_block_stop` closes `("block", i)`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, ClassVar

import msgspec

from ironrt.governance.flow import Endpoint, StreamEvent, TextSlot, TokenUsage
from ironrt.providers.base import (
    ProviderAdapter,
    content_slots,
    dict_value,
    event_setter,
    get_header,
    int_value,
    json_string_slots,
    noop,
    str_setter,
)
from ironrt.router.sse import make_event

__all__ = ["ERROR_TYPES", "AnthropicAdapter", "error_type_for_status"]

_ENCODE = msgspec.json.encode

#: HTTP status -> error type, from the API's error documentation.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_KNOWN_TYPES = frozenset(ERROR_TYPES.values())
#: Server tools whose results enter the model's input without being in the request body.
_SERVER_TOOLS = ("web_search", "web_fetch", "code_execution", "mcp", "tool_search")
_COUNT_PATH = "/v1/messages/count_tokens"
#: The body fields `POST /v1/messages/count_tokens` accepts (of a Messages request).
_COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")


# What the router walks of a Messages body (see `ProviderAdapter.request_shapes`).
class _Message(msgspec.Struct):
    content: str | list[Any] | None = None


class _MessagesShape(msgspec.Struct):
    model: str | None = None
    messages: list[_Message] | None = None
    system: str | list[Any] | None = None
    tools: list[Any] | None = None


def error_type_for_status(status: int) -> str:
    """The documented error type for a status: other 4xx are invalid requests, 5xx API errors."""
    known = ERROR_TYPES.get(status)
    if known:
        return known
    return "api_error" if status >= 500 else "invalid_request_error"


def _fold_usage(usage: dict[str, Any], acc: TokenUsage) -> None:
    """Fold an Anthropic usage object (all numbers cumulative) into `acc`.

    A `message_delta` may carry only `output_tokens`; the input parts it leaves out keep
    the values `message_start` reported.
    """
    base = acc.input_tokens - acc.cached_tokens - acc.cache_write_tokens
    if usage.get("input_tokens") is not None:
        base = int_value(usage.get("input_tokens"))
    if usage.get("cache_read_input_tokens") is not None:
        acc.cached_tokens = int_value(usage.get("cache_read_input_tokens"))
    if usage.get("cache_creation_input_tokens") is not None:
        acc.cache_write_tokens = int_value(usage.get("cache_creation_input_tokens"))
    acc.input_tokens = base + acc.cached_tokens + acc.cache_write_tokens
    if usage.get("output_tokens") is not None:
        acc.output_tokens = int_value(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and details.get("thinking_tokens") is not None:
        acc.reasoning_tokens = int_value(details.get("thinking_tokens"))


class AnthropicAdapter(ProviderAdapter):
    name: ClassVar[str] = "anthropic"
    key_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
    base_url_env: ClassVar[str] = "IRONRT_ANTHROPIC_BASE_URL"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    price_provider: ClassVar[str] = "anthropic"
    request_shapes: ClassVar[Mapping[str, type[msgspec.Struct]]] = {
        "messages": _MessagesShape,
        "messages.count_tokens": _MessagesShape,
    }

    # ---- routing and auth -------------------------------------------------------------

    def endpoint_for(self, method: str, path: str) -> Endpoint | None:
        path = path.split("?", 1)[0].rstrip("/")
        if path != "/v1" and not path.startswith("/v1/"):
            return None
        method = method.upper()
        if method == "POST":
            if path == "/v1/messages":
                return "messages"
            if path == "/v1/messages/count_tokens":
                return "messages.count_tokens"
        elif method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
            return "models"
        return "unmetered"

    def token_from_headers(self, headers: Mapping[str, str]) -> str | None:
        key = get_header(headers, "x-api-key")
        if key and key.strip():
            return key.strip()
        auth = get_header(headers, "authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        return None

    def upstream_auth_headers(self, key: str, key_env: str | None = None) -> dict[str, str]:
        if key_env == "ANTHROPIC_AUTH_TOKEN":
            return {"authorization": f"Bearer {key}"}
        return {"x-api-key": key}

    # ---- errors -----------------------------------------------------------------------

    def error_body(
        self, status: int, message: str, type: str, code: str | None, param: str | None = None
    ) -> bytes:
        """The API's error shape; a `type` it does not know is replaced by the status's."""
        kind = type if type in _KNOWN_TYPES else error_type_for_status(status)
        return _ENCODE({"type": "error", "error": {"type": kind, "message": message}})

    def stream_error_event(self, message: str, type: str) -> bytes:
        kind = type if type in _KNOWN_TYPES else "api_error"
        body = _ENCODE({"type": "error", "error": {"type": kind, "message": message}})
        return b"event: error\ndata: " + body + b"\n\n"

    # ---- request shape ----------------------------------------------------------------

    def closes_answer(self, endpoint: Endpoint, ev: StreamEvent) -> bool:
        return isinstance(ev.data, dict) and ev.data.get("type") == "message_stop"

    def max_output_tokens(self, endpoint: Endpoint, body: Any) -> int | None:
        if endpoint != "messages":
            return None
        value = dict_value(body).get("max_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def set_max_output_tokens(self, endpoint: Endpoint, body: dict[str, Any], n: int) -> None:
        if endpoint == "messages":
            body["max_tokens"] = n

    def _input_extras(self, endpoint: Endpoint, body: dict[str, Any]) -> tuple[int, bool, bool]:
        if endpoint not in ("messages", "messages.count_tokens"):
            return 0, False, False
        images = 0
        external = bool(body.get("mcp_servers")) or bool(body.get("container"))
        stack: list[Any] = []
        for msg in body.get("messages") or ():
            if isinstance(msg, dict) and isinstance(msg.get("content"), list):
                stack.extend(msg["content"])
        while stack:
            block = stack.pop()
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            images += kind == "image"
            external = external or kind in ("document", "container_upload")
            if isinstance(block.get("content"), list):
                stack.extend(block["content"])
        tools = body.get("tools")
        if isinstance(tools, list):
            external = external or any(
                isinstance(t, dict) and str(t.get("type", "")).startswith(_SERVER_TOOLS)
                for t in tools
            )
        return images, bool(tools), external

    # ---- exact input counts -----------------------------------------------------------

    def count_request(
        self, endpoint: Endpoint, body: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        """`POST /v1/messages/count_tokens` with the call's own fields (same format).

        None when the call's input is not all in the body: server tools (web search and
        fetch, code execution, MCP, tool search) and `mcp_servers` or a `container` add
        their results to the billed input while the call runs, which no count sees.
        """
        if endpoint != "messages":
            return None
        tools = body.get("tools")
        if body.get("mcp_servers") or body.get("container"):
            return None
        if isinstance(tools, list) and any(
            isinstance(t, dict) and str(t.get("type", "")).startswith(_SERVER_TOOLS) for t in tools
        ):
            return None
        return _COUNT_PATH, {k: body[k] for k in _COUNT_FIELDS if k in body}

    # ---- usage ------------------------------------------------------------------------

    def usage_from_response(self, endpoint: Endpoint, body: Any) -> TokenUsage | None:
        body = dict_value(body)
        if endpoint == "messages":
            usage = body.get("usage")
            if not isinstance(usage, dict):
                return None
            result = TokenUsage()
            _fold_usage(usage, result)
            return result
        return None

    def usage_from_event(self, endpoint: Endpoint, ev: StreamEvent, acc: TokenUsage) -> bool:
        data = ev.data
        if endpoint != "messages" or not isinstance(data, dict):
            return False
        kind = data.get("type")
        if kind == "message_start":
            usage = dict_value(data.get("message")).get("usage")
        elif kind == "message_delta":
            usage = data.get("usage")
        else:
            return False
        if not isinstance(usage, dict):
            return False
        _fold_usage(usage, acc)
        return True

    def stream_model(self, endpoint: Endpoint, ev: StreamEvent) -> str | None:
        data = ev.data
        if isinstance(data, dict) and data.get("type") == "message_start":
            model = dict_value(data.get("message")).get("model")
            if isinstance(model, str) and model:
                return model
        return None

    # ---- text access ------------------------------------------------------------------

    def request_texts(
        self, endpoint: Endpoint, body: dict[str, Any], on_change: Callable[[], None]
    ) -> list[TextSlot]:
        out: list[TextSlot] = []
        if endpoint not in ("messages", "messages.count_tokens"):
            return out
        content_slots(body, "system", ("request", "system"), "system", on_change, out)
        messages = body.get("messages")
        if not isinstance(messages, list):
            return out
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                continue
            content = msg.get("content")
            if isinstance(content, str):
                setter = str_setter(msg, "content", on_change)
                out.append(TextSlot(("request", i), content, setter, "prompt"))
            elif isinstance(content, list):
                for j, block in enumerate(content):
                    if isinstance(block, dict):
                        self._block_slots(block, ("request", i, j), on_change, out)
        return out

    @staticmethod
    def _block_slots(
        block: dict[str, Any],
        channel: tuple[Hashable, ...],
        on_change: Callable[[], None],
        out: list[TextSlot],
    ) -> None:
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            out.append(TextSlot(channel, block["text"], str_setter(block, "text", on_change)))
        elif kind == "tool_result":
            content_slots(block, "content", channel, "tool_result", on_change, out)
        elif kind == "tool_use" and isinstance(block.get("input"), dict | list):
            json_string_slots(block["input"], channel, "tool_arguments", on_change, out)
        elif kind == "document":
            source = dict_value(block.get("source"))
            if source.get("type") == "text" and isinstance(source.get("data"), str):
                setter = str_setter(source, "data", on_change)
                out.append(TextSlot(channel, source["data"], setter))
            elif source.get("type") == "content":
                content_slots(source, "content", channel, "prompt", on_change, out)

    def response_texts(self, endpoint: Endpoint, body: Any) -> list[TextSlot]:
        out: list[TextSlot] = []
        if endpoint != "messages":
            return out
        for k, block in enumerate(dict_value(body).get("content") or ()):
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                setter = str_setter(block, "text", noop)
                out.append(TextSlot(("block", k, "text"), block["text"], setter, "completion"))
            elif block.get("type") == "tool_use" and isinstance(block.get("input"), dict | list):
                json_string_slots(block["input"], ("block", k, "json"), "tool_arguments", noop, out)
        return out

    def event_texts(self, endpoint: Endpoint, ev: StreamEvent) -> list[TextSlot]:
        data = ev.data
        if endpoint != "messages" or not isinstance(data, dict):
            return []
        kind = data.get("type")
        index = data.get("index")
        if kind == "content_block_delta":
            delta = dict_value(data.get("delta"))
            dtype = delta.get("type")
            if dtype == "text_delta" and isinstance(delta.get("text"), str):
                setter = event_setter(ev, delta, "text")
                return [TextSlot(("block", index, "text"), delta["text"], setter, "completion")]
            if dtype == "input_json_delta" and isinstance(delta.get("partial_json"), str):
                setter = event_setter(ev, delta, "partial_json")
                channel = ("block", index, "json")
                return [TextSlot(channel, delta["partial_json"], setter, "tool_arguments")]
        elif kind == "content_block_start":
            block = dict_value(data.get("content_block"))
            if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
                setter = event_setter(ev, block, "text")
                return [TextSlot(("block", index, "text"), block["text"], setter, "completion")]
        return []

    def event_closes(self, endpoint: Endpoint, ev: StreamEvent) -> list[Hashable]:
        data = ev.data
        if endpoint != "messages" or not isinstance(data, dict):
            return []
        kind = data.get("type")
        if kind == "content_block_stop":
            return [("block", data.get("index"))]
        if kind in ("message_delta", "message_stop", "error"):
            return [()]
        return []

    def text_event(
        self, endpoint: Endpoint, channel: Hashable, text: str, like: StreamEvent
    ) -> StreamEvent:
        if (
            endpoint == "messages"
            and isinstance(channel, tuple)
            and len(channel) == 3
            and channel[0] == "block"
            and channel[2] in ("text", "json")
        ):
            if channel[2] == "text":
                delta = {"type": "text_delta", "text": text}
            else:
                delta = {"type": "input_json_delta", "partial_json": text}
            data = {"type": "content_block_delta", "index": channel[1], "delta": delta}
            return make_event(data, "content_block_delta")
        raise ValueError(f"no delta event carries channel {channel!r}")
