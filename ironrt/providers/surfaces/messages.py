"""The Anthropic Messages API (`POST /v1/messages`).

- Streams are named events (`message_start`, `content_block_*`, `ping`, `message_delta`,
  `message_stop`) and end with `message_stop` (no `[DONE]`); usage comes in
  `message_start` and, cumulative, in `message_delta`.
- Usage: `input_tokens` EXCLUDES cache reads and writes, so the total stored is
  `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`.
- Channels: `("block", i, "text")` for text and `("block", i, "json")` for the partial
  JSON of a tool call's input; `content_block_stop` closes `("block", i)`.
- A tool call's `input` (an object) is, in a non-streamed response, one slot of JSON text,
  the text a stream would have carried, so a policy treats both alike (a value restored
  into it lands decoded); in a request, its string leaves, one slot each.
- Exact input counts: `POST /v1/messages/count_tokens` takes the call's own fields.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from ironrt.governance.flow import StreamEvent, TextSlot, TokenUsage
from ironrt.providers.events import make_event, sse_bytes
from ironrt.providers.surfaces.base import ApiSurface
from ironrt.providers.surfaces.replies import (
    Call,
    OfflineCall,
    OfflineReply,
    json_reply,
    plan,
    stream_reply,
    user_text,
)
from ironrt.providers.texts import (
    content_slots,
    dict_value,
    event_setter,
    int_value,
    json_string_slots,
    json_text_slot,
    noop,
    str_setter,
)

if TYPE_CHECKING:
    from ironrt.providers.base import ProviderAdapter

__all__ = ["MessagesShape", "MessagesSurface", "messages_input_extras", "messages_texts"]

#: Server tools whose results enter the model's input without being in the request body.
_SERVER_TOOLS = ("web_search", "web_fetch", "code_execution", "mcp", "tool_search")
_COUNT_PATH = "/v1/messages/count_tokens"
#: The body fields `POST /v1/messages/count_tokens` accepts (of a Messages request).
_COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")
#: Blocks holding a tool's input the model wrote (an object), and a tool's result.
_TOOL_USES = ("tool_use", "server_tool_use", "mcp_tool_use")
_TOOL_RESULTS = ("tool_result", "mcp_tool_result")


class _Message(msgspec.Struct):
    content: str | list[Any] | None = None


class MessagesShape(msgspec.Struct):
    model: str | None = None
    messages: list[_Message] | None = None
    system: str | list[Any] | None = None
    tools: list[Any] | None = None


def _fold_usage(usage: dict[str, Any], acc: TokenUsage) -> None:
    """Fold a usage object (all numbers cumulative) into `acc`. A `message_delta` may
    carry only `output_tokens`; the input parts it leaves out keep `message_start`'s."""
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


def _server_tools(tools: Any) -> bool:
    return isinstance(tools, list) and any(
        isinstance(t, dict) and str(t.get("type", "")).startswith(_SERVER_TOOLS) for t in tools
    )


def messages_input_extras(body: dict[str, Any]) -> tuple[int, bool, bool]:
    """(images, tools declared, input referenced but not in the body) of a Messages body."""
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
    return images, bool(tools), external or _server_tools(tools)


def _block_slots(
    block: dict[str, Any],
    channel: tuple[Hashable, ...],
    on_change: Callable[[], None],
    out: list[TextSlot],
) -> None:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        out.append(TextSlot(channel, block["text"], str_setter(block, "text", on_change)))
    elif kind in _TOOL_RESULTS:
        content_slots(block, "content", channel, "tool_result", on_change, out)
    elif kind in _TOOL_USES and isinstance(block.get("input"), dict | list):
        json_string_slots(block["input"], channel, "tool_arguments", on_change, out)
    elif kind == "document":
        source = dict_value(block.get("source"))
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            out.append(TextSlot(channel, source["data"], str_setter(source, "data", on_change)))
        elif source.get("type") == "content":
            content_slots(source, "content", channel, "prompt", on_change, out)


def messages_texts(body: dict[str, Any], on_change: Callable[[], None]) -> list[TextSlot]:
    """Every text of a Messages request: system, messages, tool results and inputs."""
    out: list[TextSlot] = []
    content_slots(body, "system", ("request", "system"), "system", on_change, out)
    messages = body.get("messages")
    for i, msg in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            setter = str_setter(msg, "content", on_change)
            out.append(TextSlot(("request", i), content, setter, "prompt"))
        elif isinstance(content, list):
            for j, block in enumerate(content):
                if isinstance(block, dict):
                    _block_slots(block, ("request", i, j), on_change, out)
    return out


class MessagesSurface(ApiSurface):
    shape: ClassVar[type[msgspec.Struct] | None] = MessagesShape
    streams: ClassVar[bool] = True
    has_text: ClassVar[bool] = True
    required: tuple[str, ...] = ("model", "messages", "max_tokens")

    def closes_answer(self, ev: StreamEvent) -> bool:
        return dict_value(ev.data).get("type") == "message_stop"

    def max_output_tokens(self, body: Any) -> int | None:
        value = dict_value(body).get("max_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def set_max_output_tokens(self, body: dict[str, Any], n: int) -> None:
        body["max_tokens"] = n

    def input_extras(self, body: dict[str, Any]) -> tuple[int, bool, bool]:
        return messages_input_extras(body)

    def count_request(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The count endpoint with the call's own fields. None when the call's input is not
        all in the body: server tools (web search and fetch, code execution, MCP, tool
        search), `mcp_servers` or a `container` add their results while the call runs."""
        if body.get("mcp_servers") or body.get("container") or _server_tools(body.get("tools")):
            return None
        return _COUNT_PATH, {k: body[k] for k in _COUNT_FIELDS if k in body}

    def usage_from_response(self, body: Any) -> TokenUsage | None:
        usage = dict_value(body).get("usage")
        if not isinstance(usage, dict):
            return None
        result = TokenUsage()
        _fold_usage(usage, result)
        return result

    def usage_from_event(self, ev: StreamEvent, acc: TokenUsage) -> bool:
        data = dict_value(ev.data)
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

    def stream_model(self, ev: StreamEvent) -> str | None:
        data = dict_value(ev.data)
        if data.get("type") == "message_start":
            model = dict_value(data.get("message")).get("model")
            if isinstance(model, str) and model:
                return model
        return None

    def request_texts(self, body: dict[str, Any], on_change: Callable[[], None]) -> list[TextSlot]:
        return messages_texts(body, on_change)

    def response_texts(self, body: Any) -> list[TextSlot]:
        out: list[TextSlot] = []
        for k, block in enumerate(dict_value(body).get("content") or ()):
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                setter = str_setter(block, "text", noop)
                out.append(TextSlot(("block", k, "text"), block["text"], setter, "completion"))
            elif block.get("type") in _TOOL_USES and isinstance(block.get("input"), dict | list):
                channel = ("block", k, "json")
                out.append(json_text_slot(block, "input", channel, "tool_arguments", noop))
        return out

    def event_texts(self, ev: StreamEvent) -> list[TextSlot]:
        data = dict_value(ev.data)
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

    def event_closes(self, ev: StreamEvent) -> list[Hashable]:
        data = dict_value(ev.data)
        kind = data.get("type")
        if kind == "content_block_stop":
            return [("block", data.get("index"))]
        if kind in ("message_delta", "message_stop", "error"):
            return [()]
        return []

    def text_event(self, channel: Hashable, text: str, like: StreamEvent) -> StreamEvent:
        if (
            isinstance(channel, tuple)
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

    # ---- the offline provider -------------------------------------------------------------

    def last_user_text(self, body: dict[str, Any]) -> str:
        return user_text(body.get("messages"))

    def ends_with_tool_result(self, body: dict[str, Any]) -> bool:
        messages = body.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        content = last.get("content") if isinstance(last, dict) else None
        return (
            isinstance(last, dict)
            and last.get("role") == "user"
            and isinstance(content, list)
            and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
        )

    def function_tool(self, tool: dict[str, Any]) -> tuple[Any, Any] | None:
        if tool.get("type") not in (None, "custom"):
            return None
        return tool.get("name"), tool.get("input_schema")

    def offline(self, adapter: ProviderAdapter, body: Any, call: OfflineCall) -> OfflineReply:
        planned = plan(self, body, call)
        if body.get("stream") is True:
            return stream_reply(adapter, _events(planned))
        return json_reply(adapter, _body(planned))


def _stop_reason(call: Call) -> str:
    if call.tool is not None:
        return "tool_use"
    return "max_tokens" if call.truncated else "end_turn"


def _block(call: Call) -> dict[str, Any]:
    if call.tool is not None:
        name, args = call.tool
        tool_input = msgspec.json.decode(args)
        return {"type": "tool_use", "id": f"toolu_{call.ident}", "name": name, "input": tool_input}
    return {"type": "text", "text": "".join(call.chunks)}


def _body(call: Call) -> dict[str, Any]:
    u = call.usage
    return {
        "id": f"msg_{call.ident}",
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [_block(call)],
        "stop_reason": _stop_reason(call),
        "stop_sequence": None,
        "usage": {
            "input_tokens": max(u.input_tokens - u.cached_tokens - u.cache_write_tokens, 0),
            "cache_creation_input_tokens": u.cache_write_tokens,
            "cache_read_input_tokens": u.cached_tokens,
            "output_tokens": u.output_tokens,
            "service_tier": "standard",
        },
    }


def _events(call: Call) -> list[bytes]:
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(sse_bytes({"type": kind, **fields}, kind))

    start = _body(call)
    start_usage = {**start["usage"], "output_tokens": min(1, call.usage.output_tokens)}
    message = {**start, "content": [], "stop_reason": None, "usage": start_usage}
    emit("message_start", message=message)
    if call.tool is not None:
        emit("content_block_start", index=0, content_block={**_block(call), "input": {}})
        emit("ping")
        for piece in call.chunks:
            delta = {"type": "input_json_delta", "partial_json": piece}
            emit("content_block_delta", index=0, delta=delta)
    else:
        emit("content_block_start", index=0, content_block={"type": "text", "text": ""})
        emit("ping")
        for piece in call.chunks:
            emit("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
    emit("content_block_stop", index=0)
    usage = {k: v for k, v in start["usage"].items() if k != "service_tier"}
    stop = {"stop_reason": _stop_reason(call), "stop_sequence": None}
    emit("message_delta", delta=stop, usage=usage)
    emit("message_stop")
    return events
