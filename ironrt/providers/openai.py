"""The OpenAI API as the router sees it: chat completions, Responses, embeddings, models.

Shapes follow the official API (and what the `openai` SDK parses):

- Auth is `Authorization: Bearer <key>`; errors are `{"error": {"message", "type",
  "param", "code"}}`; a mid-stream error is a `data: {"error": {...}}` event, on which
  the SDK raises `openai.APIError` (for chat and Responses streams alike).
- Chat streams report usage only when `stream_options.include_usage` is set, in one last
  chunk with `"choices": []`; the stream ends with `data: [DONE]`. Responses streams
  always report usage in `response.completed` (or `.incomplete`/`.failed`) and end with
  that event, without `[DONE]`.
- Usage: `prompt_tokens`/`input_tokens` already include cached tokens, reasoning tokens
  are part of `completion_tokens`/`output_tokens`.

Channels: chat `("choice", i, "content")`, `("choice", i, "tool", j)` and the legacy
`("choice", i, "function")`; Responses `("output", o, c)` for message text,
`("output", o, "arguments")` for function-call arguments, `("output", o, "input")` for
custom tool input, each with a `"full"` suffix for the repeated full text.

Exact input counts (the chat → Responses translation the count endpoint needs) live in
`openai_count`; `chat_to_responses_input` is re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, ClassVar

import msgspec

from ironrt.governance.flow import Endpoint, StreamEvent, TextSlot, TokenUsage
from ironrt.providers import openai_count
from ironrt.providers.base import (
    ProviderAdapter,
    content_slots,
    dict_value,
    event_setter,
    get_header,
    int_value,
    noop,
    str_setter,
)
from ironrt.providers.openai_count import chat_to_responses_input, server_tools
from ironrt.router.sse import make_event

__all__ = ["OpenAIAdapter", "chat_to_responses_input"]

_ENCODE = msgspec.json.encode

#: Text part types in Responses input and output items.
_RESPONSES_TEXT = ("input_text", "output_text", "text")
_RESPONSE_END = ("response.completed", "response.incomplete", "response.failed")
#: Responses stream events carrying text: type -> (field, channel part, where). A `None`
#: part means the event's `content_index`; a `"repeat"` is the full text, already streamed.
_RESPONSES_TEXT_FIELDS: dict[str, tuple[str, str | None, str]] = {
    "response.output_text.delta": ("delta", None, "completion"),
    "response.function_call_arguments.delta": ("delta", "arguments", "tool_arguments"),
    "response.custom_tool_call_input.delta": ("delta", "input", "tool_arguments"),
    "response.output_text.done": ("text", None, "repeat"),
    "response.function_call_arguments.done": ("arguments", "arguments", "repeat"),
    "response.custom_tool_call_input.done": ("input", "input", "repeat"),
}


# What the router walks of each request body (see `ProviderAdapter.request_shapes`):
# types only, no values; anything not named here is read with `isinstance` or not at all.
class _ChatMessage(msgspec.Struct):
    content: str | list[Any] | None = None
    tool_calls: list[Any] | None = None
    function_call: dict[str, Any] | None = None


class _ChatShape(msgspec.Struct):
    model: str | None = None
    messages: list[_ChatMessage] | None = None
    stream_options: dict[str, Any] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None


class _ResponsesShape(msgspec.Struct):
    model: str | None = None
    input: str | list[Any] | None = None
    tools: list[Any] | None = None


class _EmbeddingsShape(msgspec.Struct):
    model: str | None = None
    input: str | list[Any] | None = None


def _responses_usage(usage: dict[str, Any], into: TokenUsage) -> None:
    details = dict_value(usage.get("input_tokens_details"))
    into.input_tokens = int_value(usage.get("input_tokens"))
    into.cached_tokens = int_value(details.get("cached_tokens"))
    into.cache_write_tokens = int_value(details.get("cache_write_tokens"))
    into.output_tokens = int_value(usage.get("output_tokens"))
    out_details = dict_value(usage.get("output_tokens_details"))
    into.reasoning_tokens = int_value(out_details.get("reasoning_tokens"))


def _chat_usage(usage: dict[str, Any], into: TokenUsage) -> None:
    details = dict_value(usage.get("prompt_tokens_details"))
    into.input_tokens = int_value(usage.get("prompt_tokens"))
    into.cached_tokens = int_value(details.get("cached_tokens"))
    into.cache_write_tokens = int_value(details.get("cache_write_tokens"))
    into.output_tokens = int_value(usage.get("completion_tokens"))
    out_details = dict_value(usage.get("completion_tokens_details"))
    into.reasoning_tokens = int_value(out_details.get("reasoning_tokens"))


def _output_item_slots(
    item: Any,
    index: int,
    suffix: tuple[str, ...],
    where_text: str,
    where_args: str,
    setter_for: Callable[[Any, Any], Callable[[str], None]],
    out: list[TextSlot],
) -> None:
    """Slots of one Responses output item (a message, a function or custom tool call)."""
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    if kind == "message":
        content = item.get("content")
        if isinstance(content, list):
            for c, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "output_text":
                    text = part.get("text")
                    if isinstance(text, str):
                        channel = ("output", index, c, *suffix)
                        out.append(TextSlot(channel, text, setter_for(part, "text"), where_text))
    elif kind == "function_call":
        args = item.get("arguments")
        if isinstance(args, str):
            channel = ("output", index, "arguments", *suffix)
            out.append(TextSlot(channel, args, setter_for(item, "arguments"), where_args))
    elif kind == "custom_tool_call":
        text = item.get("input")
        if isinstance(text, str):
            channel = ("output", index, "input", *suffix)
            out.append(TextSlot(channel, text, setter_for(item, "input"), where_args))


class OpenAIAdapter(ProviderAdapter):
    name: ClassVar[str] = "openai"
    key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    base_url_env: ClassVar[str] = "IRONRT_OPENAI_BASE_URL"
    default_base_url: ClassVar[str] = "https://api.openai.com"
    price_provider: ClassVar[str] = "openai"
    request_shapes: ClassVar[Mapping[str, type[msgspec.Struct]]] = {
        "chat.completions": _ChatShape,
        "responses": _ResponsesShape,
        "responses.input_tokens": _ResponsesShape,
        "embeddings": _EmbeddingsShape,
    }

    # ---- routing and auth -------------------------------------------------------------

    def endpoint_for(self, method: str, path: str) -> Endpoint | None:
        path = path.split("?", 1)[0].rstrip("/")
        if path != "/v1" and not path.startswith("/v1/"):
            return None
        method = method.upper()
        if method == "POST":
            if path == "/v1/chat/completions":
                return "chat.completions"
            if path == "/v1/responses":
                return "responses"
            if path == "/v1/responses/input_tokens":
                return "responses.input_tokens"
            if path == "/v1/embeddings":
                return "embeddings"
        elif method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
            return "models"
        return "unmetered"

    def token_from_headers(self, headers: Mapping[str, str]) -> str | None:
        auth = get_header(headers, "authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        key = get_header(headers, "api-key")  # Azure-style clients
        return key.strip() if key and key.strip() else None

    def upstream_auth_headers(self, key: str, key_env: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    # ---- errors -----------------------------------------------------------------------

    def error_body(
        self, status: int, message: str, type: str, code: str | None, param: str | None = None
    ) -> bytes:
        return _ENCODE({"error": {"message": message, "type": type, "param": param, "code": code}})

    def stream_error_event(self, message: str, type: str) -> bytes:
        error = {"message": message, "type": type, "param": None, "code": None}
        return b"data: " + _ENCODE({"error": error}) + b"\n\n"

    # ---- request shape ----------------------------------------------------------------

    def ensure_stream_usage(self, endpoint: Endpoint, body: dict[str, Any]) -> bool:
        if endpoint != "chat.completions" or body.get("stream") is not True:
            return False
        options = body.get("stream_options")
        if isinstance(options, dict):
            if options.get("include_usage") is True:
                return False
            options["include_usage"] = True
        else:
            body["stream_options"] = {"include_usage": True}
        return True

    def is_usage_only_chunk(self, endpoint: Endpoint, ev: StreamEvent) -> bool:
        data = ev.data
        return (
            endpoint == "chat.completions"
            and isinstance(data, dict)
            and data.get("choices") == []
            and isinstance(data.get("usage"), dict)
            and data.get("moderation") is None
        )

    def closes_answer(self, endpoint: Endpoint, ev: StreamEvent) -> bool:
        if endpoint == "chat.completions":
            return ev.data is None and ev.raw.strip().endswith(b"[DONE]")
        return isinstance(ev.data, dict) and ev.data.get("type") in _RESPONSE_END

    def max_output_tokens(self, endpoint: Endpoint, body: Any) -> int | None:
        body = dict_value(body)
        if endpoint == "chat.completions":
            value = body.get("max_completion_tokens")
            if value is None:
                value = body.get("max_tokens")
        elif endpoint == "responses":
            value = body.get("max_output_tokens")
        else:
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def set_max_output_tokens(self, endpoint: Endpoint, body: dict[str, Any], n: int) -> None:
        if endpoint == "chat.completions":
            legacy = "max_tokens" in body
            if "max_completion_tokens" in body or not legacy:
                body["max_completion_tokens"] = n
            if legacy:
                body["max_tokens"] = n
        elif endpoint == "responses":
            body["max_output_tokens"] = n

    def choices(self, endpoint: Endpoint, body: Any) -> int:
        n = dict_value(body).get("n")
        if endpoint == "chat.completions" and isinstance(n, int) and n > 1:
            return n
        return 1

    def _input_extras(self, endpoint: Endpoint, body: dict[str, Any]) -> tuple[int, bool, bool]:
        images = 0
        external = False
        tools = body.get("tools")
        has_tools = bool(tools) or bool(body.get("functions"))
        if endpoint == "chat.completions":
            for msg in body.get("messages") or ():
                content = msg.get("content") if isinstance(msg, dict) else None
                if isinstance(content, list):
                    for part in content:
                        kind = part.get("type") if isinstance(part, dict) else None
                        images += kind == "image_url"
                        external = external or kind == "file"
        elif endpoint in ("responses", "responses.input_tokens"):
            external = any(body.get(k) for k in ("previous_response_id", "conversation", "prompt"))
            items = body.get("input")
            stack: list[Any] = list(items) if isinstance(items, list) else []
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    kind = node.get("type")
                    images += kind == "input_image"
                    external = external or kind in ("input_file", "item_reference")
                    for key in ("content", "output"):
                        if isinstance(node.get(key), list):
                            stack.extend(node[key])
            external = external or server_tools(tools)
        return images, has_tools, external

    # ---- exact input counts -----------------------------------------------------------

    def count_request(
        self, endpoint: Endpoint, body: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        """`POST /v1/responses/input_tokens` with the call's input (see `openai_count`)."""
        return openai_count.count_request(endpoint, body)

    def count_margin(self, endpoint: Endpoint, body: dict[str, Any]) -> int:
        """What the Responses count may miss of a chat call's input (see `openai_count`)."""
        return openai_count.count_margin(endpoint, body)

    # ---- usage ------------------------------------------------------------------------

    def usage_from_response(self, endpoint: Endpoint, body: Any) -> TokenUsage | None:
        usage = dict_value(body).get("usage")
        if not isinstance(usage, dict):
            return None
        result = TokenUsage()
        if endpoint == "responses":
            _responses_usage(usage, result)
        elif endpoint == "embeddings":
            result.input_tokens = int_value(usage.get("prompt_tokens"))
        elif endpoint == "chat.completions":
            _chat_usage(usage, result)
        else:
            return None
        return result

    def usage_from_event(self, endpoint: Endpoint, ev: StreamEvent, acc: TokenUsage) -> bool:
        data = ev.data
        if not isinstance(data, dict):
            return False
        if endpoint == "chat.completions":
            usage = data.get("usage")
            if isinstance(usage, dict):
                _chat_usage(usage, acc)
                return True
        elif endpoint == "responses" and data.get("type") in _RESPONSE_END:
            usage = dict_value(data.get("response")).get("usage")
            if isinstance(usage, dict):
                _responses_usage(usage, acc)
                return True
        return False

    def stream_model(self, endpoint: Endpoint, ev: StreamEvent) -> str | None:
        data = ev.data
        if not isinstance(data, dict):
            return None
        if endpoint == "responses":
            data = dict_value(data.get("response"))
        model = data.get("model")
        return model if isinstance(model, str) and model else None

    # ---- text access: requests ----------------------------------------------------------

    def request_texts(
        self, endpoint: Endpoint, body: dict[str, Any], on_change: Callable[[], None]
    ) -> list[TextSlot]:
        out: list[TextSlot] = []
        if endpoint == "chat.completions":
            self._chat_request(body, on_change, out)
        elif endpoint in ("responses", "responses.input_tokens"):
            self._responses_request(body, on_change, out)
        elif endpoint == "embeddings":
            value = body.get("input")
            if isinstance(value, str):
                setter = str_setter(body, "input", on_change)
                out.append(TextSlot(("request", "input"), value, setter, "input"))
            elif isinstance(value, list):
                for i, text in enumerate(value):
                    if isinstance(text, str):
                        setter = str_setter(value, i, on_change)
                        out.append(TextSlot(("request", "input", i), text, setter, "input"))
        return out

    @staticmethod
    def _chat_request(
        body: dict[str, Any], on_change: Callable[[], None], out: list[TextSlot]
    ) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                continue
            role = msg.get("role")
            if role in ("system", "developer"):
                where = "system"
            elif role in ("tool", "function"):
                where = "tool_result"
            else:
                where = "prompt"
            content_slots(msg, "content", ("request", i), where, on_change, out)
            for j, call in enumerate(msg.get("tool_calls") or ()):
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    setter = str_setter(function, "arguments", on_change)
                    tool_channel = ("request", i, "tool", j)
                    text = function["arguments"]
                    out.append(TextSlot(tool_channel, text, setter, "tool_arguments"))
            function = msg.get("function_call")
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                setter = str_setter(function, "arguments", on_change)
                channel = ("request", i, "function")
                out.append(TextSlot(channel, function["arguments"], setter, "tool_arguments"))

    @staticmethod
    def _responses_request(
        body: dict[str, Any], on_change: Callable[[], None], out: list[TextSlot]
    ) -> None:
        if isinstance(body.get("instructions"), str):
            setter = str_setter(body, "instructions", on_change)
            text = body["instructions"]
            out.append(TextSlot(("request", "instructions"), text, setter, "system"))
        items = body.get("input")
        if isinstance(items, str):
            out.append(TextSlot(("request", "input"), items, str_setter(body, "input", on_change)))
            return
        if not isinstance(items, list):
            return
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            channel = ("request", i)
            if kind in ("function_call_output", "custom_tool_call_output"):
                content_slots(
                    item, "output", channel, "tool_result", on_change, out, _RESPONSES_TEXT
                )
            elif kind == "function_call":
                if isinstance(item.get("arguments"), str):
                    setter = str_setter(item, "arguments", on_change)
                    out.append(TextSlot(channel, item["arguments"], setter, "tool_arguments"))
            elif kind == "custom_tool_call":
                if isinstance(item.get("input"), str):
                    setter = str_setter(item, "input", on_change)
                    out.append(TextSlot(channel, item["input"], setter, "tool_arguments"))
            elif kind in (None, "message"):
                where = "system" if item.get("role") in ("system", "developer") else "prompt"
                content_slots(item, "content", channel, where, on_change, out, _RESPONSES_TEXT)

    # ---- text access: responses and streams ---------------------------------------------

    def response_texts(self, endpoint: Endpoint, body: Any) -> list[TextSlot]:
        out: list[TextSlot] = []
        body = dict_value(body)
        if endpoint == "chat.completions":
            for pos, choice in enumerate(body.get("choices") or ()):
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", pos)
                message = dict_value(choice.get("message"))
                if isinstance(message.get("content"), str):
                    setter = str_setter(message, "content", noop)
                    channel = ("choice", index, "content")
                    out.append(TextSlot(channel, message["content"], setter, "completion"))
                self._tool_call_slots(
                    message, index, lambda c, k: str_setter(c, k, noop), out, with_index=False
                )
        elif endpoint == "responses":
            for k, item in enumerate(body.get("output") or ()):
                _output_item_slots(
                    item, k, (), "completion", "tool_arguments",
                    lambda c, key: str_setter(c, key, noop), out,
                )  # fmt: skip
        return out

    @staticmethod
    def _tool_call_slots(
        message: dict[str, Any],
        index: Any,
        setter_for: Callable[[Any, Any], Callable[[str], None]],
        out: list[TextSlot],
        *,
        with_index: bool,
    ) -> None:
        """Tool-call arguments of a chat message (`with_index`: a delta with indices)."""
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            for pos, call in enumerate(calls):
                if not isinstance(call, dict):
                    continue
                function = call.get("function")
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    if with_index and not function["arguments"]:
                        continue
                    tool = call.get("index", pos) if with_index else pos
                    tool_channel = ("choice", index, "tool", tool)
                    setter = setter_for(function, "arguments")
                    text = function["arguments"]
                    out.append(TextSlot(tool_channel, text, setter, "tool_arguments"))
        function = message.get("function_call")
        if (
            isinstance(function, dict)
            and isinstance(function.get("arguments"), str)
            and not (with_index and not function["arguments"])
        ):
            setter = setter_for(function, "arguments")
            channel = ("choice", index, "function")
            out.append(TextSlot(channel, function["arguments"], setter, "tool_arguments"))

    def event_texts(self, endpoint: Endpoint, ev: StreamEvent) -> list[TextSlot]:
        data = ev.data
        if not isinstance(data, dict):
            return []
        out: list[TextSlot] = []

        def setter_for(container: Any, key: Any) -> Callable[[str], None]:
            return event_setter(ev, container, key)

        if endpoint == "chat.completions":
            for pos, choice in enumerate(data.get("choices") or ()):
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", pos)
                delta = dict_value(choice.get("delta"))
                content = delta.get("content")
                if isinstance(content, str) and content:
                    channel = ("choice", index, "content")
                    setter = setter_for(delta, "content")
                    out.append(TextSlot(channel, content, setter, "completion"))
                self._tool_call_slots(delta, index, setter_for, out, with_index=True)
        elif endpoint == "responses":
            self._responses_event_texts(data, setter_for, out)
        return out

    @staticmethod
    def _responses_event_texts(
        data: dict[str, Any],
        setter_for: Callable[[Any, Any], Callable[[str], None]],
        out: list[TextSlot],
    ) -> None:
        kind = data.get("type")
        oi = data.get("output_index")
        field = _RESPONSES_TEXT_FIELDS.get(kind) if isinstance(kind, str) else None
        if field is not None:
            key, part, where = field
            text = data.get(key)
            if isinstance(text, str):
                suffix = ("full",) if where == "repeat" else ()
                channel = ("output", oi, part or data.get("content_index"), *suffix)
                out.append(TextSlot(channel, text, setter_for(data, key), where))
        elif kind in ("response.content_part.done", "response.content_part.added"):
            part_data = dict_value(data.get("part"))
            text = part_data.get("text")
            if part_data.get("type") == "output_text" and isinstance(text, str) and text:
                done = kind == "response.content_part.done"
                where = "repeat" if done else "completion"
                channel = ("output", oi, data.get("content_index"), *(("full",) if done else ()))
                out.append(TextSlot(channel, text, setter_for(part_data, "text"), where))
        elif kind == "response.output_item.done":
            index = oi if isinstance(oi, int) else 0
            item = data.get("item")
            _output_item_slots(item, index, ("full",), "repeat", "repeat", setter_for, out)
        elif kind in _RESPONSE_END:
            response = dict_value(data.get("response"))
            for k, item in enumerate(response.get("output") or ()):
                _output_item_slots(item, k, ("full",), "repeat", "repeat", setter_for, out)

    def event_closes(self, endpoint: Endpoint, ev: StreamEvent) -> list[Hashable]:
        data = ev.data
        if endpoint == "chat.completions":
            if data is None:
                return [()] if b"[DONE]" in ev.raw else []
            if not isinstance(data, dict):
                return []
            closed: list[Hashable] = []
            for pos, choice in enumerate(data.get("choices") or ()):
                if isinstance(choice, dict) and choice.get("finish_reason") is not None:
                    closed.append(("choice", choice.get("index", pos)))
            if isinstance(data.get("error"), dict):
                closed.append(())
            return closed
        if endpoint != "responses" or not isinstance(data, dict):
            return []
        kind = data.get("type")
        oi = data.get("output_index")
        if kind in ("response.output_text.done", "response.content_part.done"):
            return [("output", oi, data.get("content_index"))]
        if kind == "response.function_call_arguments.done":
            return [("output", oi, "arguments")]
        if kind == "response.custom_tool_call_input.done":
            return [("output", oi, "input")]
        if kind == "response.output_item.done":
            return [("output", oi)]
        if kind in _RESPONSE_END or kind == "error" or isinstance(data.get("error"), dict):
            return [()]
        return []

    def text_event(
        self, endpoint: Endpoint, channel: Hashable, text: str, like: StreamEvent
    ) -> StreamEvent:
        if not isinstance(channel, tuple) or len(channel) < 3:
            raise ValueError(f"no delta event carries channel {channel!r}")
        base = dict_value(like.data)
        if endpoint == "chat.completions" and channel[0] == "choice":
            _, index, kind, *rest = channel
            delta: dict[str, Any]
            if kind == "content":
                delta = {"content": text}
            elif kind == "tool" and rest:
                delta = {"tool_calls": [{"index": rest[0], "function": {"arguments": text}}]}
            elif kind == "function":
                delta = {"function_call": {"arguments": text}}
            else:
                raise ValueError(f"no delta event carries channel {channel!r}")
            chunk: dict[str, Any] = {
                "id": base.get("id", ""),
                "object": "chat.completion.chunk",
                "created": base.get("created", 0),
                "model": base.get("model", ""),
            }
            for key in ("service_tier", "system_fingerprint"):
                if key in base:
                    chunk[key] = base[key]
            chunk["choices"] = [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
            ]
            if "usage" in base:
                chunk["usage"] = None
            return make_event(chunk)
        if endpoint == "responses" and channel[0] == "output" and len(channel) == 3:
            _, oi, part = channel
            event: dict[str, Any]
            if part == "arguments":
                kind = "response.function_call_arguments.delta"
                event = {"type": kind, "sequence_number": 0, "item_id": "", "output_index": oi}
            elif part == "input":
                kind = "response.custom_tool_call_input.delta"
                event = {"type": kind, "sequence_number": 0, "item_id": "", "output_index": oi}
            else:
                kind = "response.output_text.delta"
                event = {
                    "type": kind,
                    "sequence_number": 0,
                    "item_id": "",
                    "output_index": oi,
                    "content_index": part,
                }
            event["delta"] = text
            if kind == "response.output_text.delta":
                event["logprobs"] = []
            event["sequence_number"] = int_value(base.get("sequence_number"))
            event["item_id"] = self._item_id(base, oi)
            return make_event(event, kind)
        raise ValueError(f"no delta event carries channel {channel!r}")

    @staticmethod
    def _item_id(data: dict[str, Any], output_index: Any) -> str:
        """The output item id for `output_index`, from whichever event `data` is."""
        if isinstance(data.get("item_id"), str):
            return str(data["item_id"])
        item = dict_value(data.get("item"))
        if isinstance(item.get("id"), str):
            return str(item["id"])
        output = dict_value(data.get("response")).get("output")
        if isinstance(output, list) and isinstance(output_index, int) and output_index >= 0:
            item_id = dict_value(output[output_index] if output_index < len(output) else None)
            if isinstance(item_id.get("id"), str):
                return str(item_id["id"])
        return ""
