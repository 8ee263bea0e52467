"""The OpenAI Responses API (`POST /v1/responses`).

- Streams always report usage in `response.completed` (or `.incomplete`/`.failed`) and
  end with that event, without `[DONE]`.
- Usage: `input_tokens` already includes cached tokens, reasoning tokens are part of
  `output_tokens`.
- Channels: `("output", o, c)` for message text, `("output", o, "arguments")` for
  function-call arguments, `("output", o, "input")` for custom tool input,
  `("output", o, "mcp_arguments")` for the arguments of an MCP call, each with a
  `"full"` suffix for the full text the `*.done` events and the final response repeat
  (slots with `where="repeat"`). Text a `response.output_item.added` already carries is
  the start of its channel, as the SDKs accumulate it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from ironrt.governance.flow import StreamEvent, TextSlot, TokenUsage
from ironrt.providers import openai_count
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
    noop,
    str_setter,
)

if TYPE_CHECKING:
    from ironrt.providers.base import ProviderAdapter

__all__ = ["ResponsesShape", "ResponsesSurface", "responses_input_extras", "responses_texts"]

#: Text part types in Responses input and output items.
_TEXT_PARTS = ("input_text", "output_text", "text")
_END = ("response.completed", "response.incomplete", "response.failed")
#: Stream events carrying text: type -> (field, channel part, where). A `None` part means
#: the event's `content_index`; a `"repeat"` is the full text, already streamed.
_TEXT_FIELDS: dict[str, tuple[str, str | None, str]] = {
    "response.output_text.delta": ("delta", None, "completion"),
    "response.function_call_arguments.delta": ("delta", "arguments", "tool_arguments"),
    "response.custom_tool_call_input.delta": ("delta", "input", "tool_arguments"),
    "response.mcp_call_arguments.delta": ("delta", "mcp_arguments", "tool_arguments"),
    "response.output_text.done": ("text", None, "repeat"),
    "response.function_call_arguments.done": ("arguments", "arguments", "repeat"),
    "response.custom_tool_call_input.done": ("input", "input", "repeat"),
    "response.mcp_call_arguments.done": ("arguments", "mcp_arguments", "repeat"),
}
_CLOSES: dict[str, str | None] = {
    "response.output_text.done": None,
    "response.content_part.done": None,
    "response.function_call_arguments.done": "arguments",
    "response.custom_tool_call_input.done": "input",
    "response.mcp_call_arguments.done": "mcp_arguments",
}
#: Output items holding the text of a tool call the model wrote: type -> (field, channel
#: part); and the delta event that carries each part.
_CALL_ITEMS = {
    "function_call": ("arguments", "arguments"),
    "custom_tool_call": ("input", "input"),
    "mcp_call": ("arguments", "mcp_arguments"),
}
_DELTA_EVENTS = {
    "arguments": "response.function_call_arguments.delta",
    "input": "response.custom_tool_call_input.delta",
    "mcp_arguments": "response.mcp_call_arguments.delta",
}


class ResponsesShape(msgspec.Struct):
    model: str | None = None
    input: str | list[Any] | None = None
    tools: list[Any] | None = None


def _usage_into(usage: dict[str, Any], into: TokenUsage) -> None:
    details = dict_value(usage.get("input_tokens_details"))
    into.input_tokens = int_value(usage.get("input_tokens"))
    into.cached_tokens = int_value(details.get("cached_tokens"))
    into.cache_write_tokens = int_value(details.get("cache_write_tokens"))
    into.output_tokens = int_value(usage.get("output_tokens"))
    out_details = dict_value(usage.get("output_tokens_details"))
    into.reasoning_tokens = int_value(out_details.get("reasoning_tokens"))


def responses_texts(body: dict[str, Any], on_change: Callable[[], None]) -> list[TextSlot]:
    """Every text of a Responses request: instructions, input, tool calls and outputs."""
    out: list[TextSlot] = []
    if isinstance(body.get("instructions"), str):
        setter = str_setter(body, "instructions", on_change)
        out.append(TextSlot(("request", "instructions"), body["instructions"], setter, "system"))
    items = body.get("input")
    if isinstance(items, str):
        out.append(TextSlot(("request", "input"), items, str_setter(body, "input", on_change)))
        return out
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        channel = ("request", i)
        if kind in ("function_call_output", "custom_tool_call_output"):
            content_slots(item, "output", channel, "tool_result", on_change, out, _TEXT_PARTS)
        elif isinstance(kind, str) and kind in _CALL_ITEMS:
            key = _CALL_ITEMS[kind][0]
            if isinstance(item.get(key), str):
                setter = str_setter(item, key, on_change)
                out.append(TextSlot(channel, item[key], setter, "tool_arguments"))
            if kind == "mcp_call":  # the MCP server's answer, as the call ran upstream
                output = (*channel, "output")
                content_slots(item, "output", output, "tool_result", on_change, out, _TEXT_PARTS)
        elif kind in (None, "message"):
            where = "system" if item.get("role") in ("system", "developer") else "prompt"
            content_slots(item, "content", channel, where, on_change, out, _TEXT_PARTS)
    return out


def responses_input_extras(body: dict[str, Any]) -> tuple[int, bool, bool]:
    """(images, tools declared, input referenced but not in the body) of a Responses input."""
    images = 0
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
    tools = body.get("tools")
    has_tools = bool(tools) or bool(body.get("functions"))
    return images, has_tools, external or openai_count.server_tools(tools)


def _item_slots(
    item: Any,
    index: int,
    suffix: tuple[str, ...],
    where_text: str,
    where_args: str,
    setter_for: Callable[[Any, Any], Callable[[str], None]],
    out: list[TextSlot],
) -> None:
    """Slots of one output item (a message, a function or custom tool call)."""
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    content = item.get("content")
    if kind == "message" and isinstance(content, list):
        for c, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "output_text":
                text = part.get("text")
                if isinstance(text, str):
                    channel = ("output", index, c, *suffix)
                    out.append(TextSlot(channel, text, setter_for(part, "text"), where_text))
    elif isinstance(kind, str) and kind in _CALL_ITEMS:
        key, part = _CALL_ITEMS[kind]
        if isinstance(item.get(key), str):
            channel = ("output", index, part, *suffix)
            out.append(TextSlot(channel, item[key], setter_for(item, key), where_args))


def _item_id(data: dict[str, Any], output_index: Any) -> str:
    """The output item id for `output_index`, from whichever event `data` is."""
    if isinstance(data.get("item_id"), str):
        return str(data["item_id"])
    item = dict_value(data.get("item"))
    if isinstance(item.get("id"), str):
        return str(item["id"])
    output = dict_value(data.get("response")).get("output")
    if isinstance(output, list) and isinstance(output_index, int) and output_index >= 0:
        found = dict_value(output[output_index] if output_index < len(output) else None)
        if isinstance(found.get("id"), str):
            return str(found["id"])
    return ""


class ResponsesSurface(ApiSurface):
    shape: ClassVar[type[msgspec.Struct] | None] = ResponsesShape
    streams: ClassVar[bool] = True
    has_text: ClassVar[bool] = True
    required: tuple[str, ...] = ("model", "input")

    def closes_answer(self, ev: StreamEvent) -> bool:
        return dict_value(ev.data).get("type") in _END

    def max_output_tokens(self, body: Any) -> int | None:
        value = dict_value(body).get("max_output_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def set_max_output_tokens(self, body: dict[str, Any], n: int) -> None:
        body["max_output_tokens"] = n

    def input_extras(self, body: dict[str, Any]) -> tuple[int, bool, bool]:
        return responses_input_extras(body)

    def count_request(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        return openai_count.count_request("responses", body)

    def usage_from_response(self, body: Any) -> TokenUsage | None:
        usage = dict_value(body).get("usage")
        if not isinstance(usage, dict):
            return None
        result = TokenUsage()
        _usage_into(usage, result)
        return result

    def usage_from_event(self, ev: StreamEvent, acc: TokenUsage) -> bool:
        data = dict_value(ev.data)
        usage = dict_value(data.get("response")).get("usage")
        if data.get("type") in _END and isinstance(usage, dict):
            _usage_into(usage, acc)
            return True
        return False

    def stream_model(self, ev: StreamEvent) -> str | None:
        model = dict_value(dict_value(ev.data).get("response")).get("model")
        return model if isinstance(model, str) and model else None

    def request_texts(self, body: dict[str, Any], on_change: Callable[[], None]) -> list[TextSlot]:
        return responses_texts(body, on_change)

    def response_texts(self, body: Any) -> list[TextSlot]:
        out: list[TextSlot] = []
        for k, item in enumerate(dict_value(body).get("output") or ()):
            _item_slots(
                item, k, (), "completion", "tool_arguments",
                lambda c, key: str_setter(c, key, noop), out,
            )  # fmt: skip
        return out

    def event_texts(self, ev: StreamEvent) -> list[TextSlot]:
        data = ev.data
        if not isinstance(data, dict):
            return []
        out: list[TextSlot] = []

        def setter_for(container: Any, key: Any) -> Callable[[str], None]:
            return event_setter(ev, container, key)

        kind = data.get("type")
        oi = data.get("output_index")
        field = _TEXT_FIELDS.get(kind) if isinstance(kind, str) else None
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
        elif kind == "response.output_item.added":
            # OpenAI adds an item empty; a provider that adds it with its first text starts
            # the item's channels there (the SDKs append the deltas to the added item).
            index = oi if isinstance(oi, int) else 0
            added: list[TextSlot] = []
            _item_slots(
                data.get("item"), index, (), "completion", "tool_arguments", setter_for, added
            )
            out += [slot for slot in added if slot.text]
        elif kind == "response.output_item.done":
            index = oi if isinstance(oi, int) else 0
            _item_slots(data.get("item"), index, ("full",), "repeat", "repeat", setter_for, out)
        elif kind in _END:
            for k, item in enumerate(dict_value(data.get("response")).get("output") or ()):
                _item_slots(item, k, ("full",), "repeat", "repeat", setter_for, out)
        return out

    def event_closes(self, ev: StreamEvent) -> list[Hashable]:
        data = ev.data
        if not isinstance(data, dict):
            return []
        kind = data.get("type")
        oi = data.get("output_index")
        if isinstance(kind, str) and kind in _CLOSES:
            return [("output", oi, _CLOSES[kind] or data.get("content_index"))]
        if kind == "response.output_item.done":
            return [("output", oi)]
        if kind in _END or kind == "error" or isinstance(data.get("error"), dict):
            return [()]
        return []

    def text_event(self, channel: Hashable, text: str, like: StreamEvent) -> StreamEvent:
        if not isinstance(channel, tuple) or len(channel) != 3 or channel[0] != "output":
            raise ValueError(f"no delta event carries channel {channel!r}")
        _, oi, part = channel
        base = dict_value(like.data)
        event: dict[str, Any] = {
            "type": "response.output_text.delta",
            "sequence_number": int_value(base.get("sequence_number")),
            "item_id": _item_id(base, oi),
            "output_index": oi,
        }
        if isinstance(part, str) and part in _DELTA_EVENTS:
            event["type"] = _DELTA_EVENTS[part]
        else:
            event["content_index"] = part
        event["delta"] = text
        if event["type"] == "response.output_text.delta":
            event["logprobs"] = []
        return make_event(event, event["type"])

    # ---- the offline provider -------------------------------------------------------------

    def last_user_text(self, body: dict[str, Any]) -> str:
        items = body.get("input")
        return items if isinstance(items, str) else user_text(items)

    def ends_with_tool_result(self, body: dict[str, Any]) -> bool:
        items = body.get("input")
        last = items[-1] if isinstance(items, list) and items else None
        kinds = ("function_call_output", "custom_tool_call_output")
        return isinstance(last, dict) and last.get("type") in kinds

    def function_tool(self, tool: dict[str, Any]) -> tuple[Any, Any] | None:
        if tool.get("type") != "function":
            return None
        return tool.get("name"), tool.get("parameters")

    def offline(self, adapter: ProviderAdapter, body: Any, call: OfflineCall) -> OfflineReply:
        planned = plan(self, body, call)
        if body.get("stream") is True:
            return stream_reply(adapter, _events(planned, body))
        return json_reply(adapter, _body(planned, body, "completed"))


def _item(call: Call, status: str, text: str | None = None) -> dict[str, Any]:
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


def _body(call: Call, body: dict[str, Any], status: str) -> dict[str, Any]:
    """The response object; `status` "in_progress" gives the one `response.created` sends."""
    done = status != "in_progress"
    if done and call.truncated:
        status = "incomplete"
    item_status = "incomplete" if status == "incomplete" else "completed"
    u = call.usage
    usage = {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cached_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }
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
        "output": [_item(call, item_status)] if done else [],
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
        "usage": usage if done else None,
        "user": None,
        "metadata": body.get("metadata", {}),
    }


def _events(call: Call, body: dict[str, Any]) -> list[bytes]:
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(sse_bytes({"type": kind, "sequence_number": len(events), **fields}, kind))

    start = _body(call, body, "in_progress")
    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    final = _body(call, body, "completed")
    item = final["output"][0]
    emit("response.output_item.added", output_index=0, item=_item(call, "in_progress", ""))
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
