"""OpenAI chat completions (`POST /v1/chat/completions`), as OpenAI and every
OpenAI-compatible provider serve it.

- Streams report usage only when `stream_options.include_usage` is set, in one last chunk
  with `"choices": []`; the router sets it itself when the agent did not, and drops that
  chunk. The stream ends with `data: [DONE]`.
- Usage: `prompt_tokens` already includes cached tokens, reasoning tokens are part of
  `completion_tokens`.
- Channels: `("choice", i, "content")`, `("choice", i, "tool", j)` for a function's
  arguments, `("choice", i, "custom", j)` for a custom tool's input and the legacy
  `("choice", i, "function")`; a choice's `finish_reason` closes `("choice", i)`.
- Exact input counts translate the call to the Responses format (`openai_count`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import partial
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

__all__ = ["ChatSurface", "chat_usage"]


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


def chat_usage(usage: dict[str, Any], into: TokenUsage) -> None:
    details = dict_value(usage.get("prompt_tokens_details"))
    into.input_tokens = int_value(usage.get("prompt_tokens"))
    into.cached_tokens = int_value(details.get("cached_tokens"))
    into.cache_write_tokens = int_value(details.get("cache_write_tokens"))
    into.output_tokens = int_value(usage.get("completion_tokens"))
    out_details = dict_value(usage.get("completion_tokens_details"))
    into.reasoning_tokens = int_value(out_details.get("reasoning_tokens"))


#: The text of a tool call in a chat message: (call field, text field, channel kind). A
#: custom tool's input is free text (`custom.input`), a function's arguments JSON.
_CALL_TEXTS = (("function", "arguments", "tool"), ("custom", "input", "custom"))


def _tool_call_slots(
    message: dict[str, Any],
    prefix: tuple[Hashable, ...],
    setter_for: Callable[[Any, Any], Callable[[str], None]],
    out: list[TextSlot],
    *,
    with_index: bool,
) -> None:
    """Tool-call texts of a chat message, on channels under `prefix` (`with_index`: a
    stream delta, whose calls carry their index and whose empty texts are skipped)."""
    calls = message.get("tool_calls")
    for pos, call in enumerate(calls if isinstance(calls, list) else ()):
        if not isinstance(call, dict):
            continue
        tool = call.get("index", pos) if with_index else pos
        for field, key, kind in _CALL_TEXTS:
            part = call.get(field)
            text = part.get(key) if isinstance(part, dict) else None
            if isinstance(text, str) and (text or not with_index):
                setter = setter_for(part, key)
                out.append(TextSlot((*prefix, kind, tool), text, setter, "tool_arguments"))
    function = message.get("function_call")
    text = function.get("arguments") if isinstance(function, dict) else None
    if isinstance(text, str) and (text or not with_index):
        setter = setter_for(function, "arguments")
        out.append(TextSlot((*prefix, "function"), text, setter, "tool_arguments"))


class ChatSurface(ApiSurface):
    shape: ClassVar[type[msgspec.Struct] | None] = _ChatShape
    streams: ClassVar[bool] = True
    has_text: ClassVar[bool] = True
    required: tuple[str, ...] = ("model", "messages")

    # ---- request shape ----------------------------------------------------------------

    def ensure_stream_usage(self, body: dict[str, Any]) -> bool:
        if body.get("stream") is not True:
            return False
        options = body.get("stream_options")
        if isinstance(options, dict):
            if options.get("include_usage") is True:
                return False
            options["include_usage"] = True
        else:
            body["stream_options"] = {"include_usage": True}
        return True

    def is_usage_only_chunk(self, ev: StreamEvent) -> bool:
        data = ev.data
        return (
            isinstance(data, dict)
            and data.get("choices") == []
            and isinstance(data.get("usage"), dict)
            and data.get("moderation") is None
        )

    def closes_answer(self, ev: StreamEvent) -> bool:
        return ev.data is None and ev.raw.strip().endswith(b"[DONE]")

    def max_output_tokens(self, body: Any) -> int | None:
        body = dict_value(body)
        value = body.get("max_completion_tokens")
        if value is None:
            value = body.get("max_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def set_max_output_tokens(self, body: dict[str, Any], n: int) -> None:
        legacy = "max_tokens" in body
        if "max_completion_tokens" in body or not legacy:
            body["max_completion_tokens"] = n
        if legacy:
            body["max_tokens"] = n

    def choices(self, body: Any) -> int:
        n = dict_value(body).get("n")
        return n if isinstance(n, int) and n > 1 else 1

    def input_extras(self, body: dict[str, Any]) -> tuple[int, bool, bool]:
        images = 0
        external = False
        for msg in body.get("messages") or ():
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, list):
                for part in content:
                    kind = part.get("type") if isinstance(part, dict) else None
                    images += kind == "image_url"
                    external = external or kind == "file"
        return images, bool(body.get("tools")) or bool(body.get("functions")), external

    def count_request(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        return openai_count.count_request("chat.completions", body)

    def count_margin(self, body: dict[str, Any]) -> int:
        return openai_count.count_margin("chat.completions", body)

    # ---- usage --------------------------------------------------------------------------

    def usage_from_response(self, body: Any) -> TokenUsage | None:
        usage = dict_value(body).get("usage")
        if not isinstance(usage, dict):
            return None
        result = TokenUsage()
        chat_usage(usage, result)
        return result

    def usage_from_event(self, ev: StreamEvent, acc: TokenUsage) -> bool:
        usage = dict_value(ev.data).get("usage")
        if isinstance(usage, dict):
            chat_usage(usage, acc)
            return True
        return False

    def stream_model(self, ev: StreamEvent) -> str | None:
        model = dict_value(ev.data).get("model")
        return model if isinstance(model, str) and model else None

    # ---- text access --------------------------------------------------------------------

    def request_texts(self, body: dict[str, Any], on_change: Callable[[], None]) -> list[TextSlot]:
        out: list[TextSlot] = []
        messages = body.get("messages")
        if not isinstance(messages, list):
            return out

        def setter_for(container: Any, key: Any) -> Callable[[str], None]:
            return str_setter(container, key, on_change)

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
            if "tool_calls" in msg or "function_call" in msg:  # most messages have neither
                _tool_call_slots(msg, ("request", i), setter_for, out, with_index=False)
        return out

    def response_texts(self, body: Any) -> list[TextSlot]:
        out: list[TextSlot] = []
        for pos, choice in enumerate(dict_value(body).get("choices") or ()):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", pos)
            message = dict_value(choice.get("message"))
            if isinstance(message.get("content"), str):
                setter = str_setter(message, "content", noop)
                channel = ("choice", index, "content")
                out.append(TextSlot(channel, message["content"], setter, "completion"))
            if "tool_calls" in message or "function_call" in message:
                _tool_call_slots(
                    message, ("choice", index), lambda c, k: str_setter(c, k, noop), out,
                    with_index=False,
                )  # fmt: skip
        return out

    def event_texts(self, ev: StreamEvent) -> list[TextSlot]:
        # Called for every event of a stream a policy reads: nothing is built for a delta
        # that has no tool call (most of them).
        data = ev.data
        if not isinstance(data, dict):
            return []
        out: list[TextSlot] = []
        for pos, choice in enumerate(data.get("choices") or ()):
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            index = choice.get("index", pos)
            content = delta.get("content")
            if isinstance(content, str) and content:
                setter = event_setter(ev, delta, "content")
                out.append(TextSlot(("choice", index, "content"), content, setter, "completion"))
            if "tool_calls" in delta or "function_call" in delta:
                _tool_call_slots(
                    delta, ("choice", index), partial(event_setter, ev), out, with_index=True
                )
        return out

    def event_closes(self, ev: StreamEvent) -> list[Hashable]:
        data = ev.data
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

    def text_event(self, channel: Hashable, text: str, like: StreamEvent) -> StreamEvent:
        if not isinstance(channel, tuple) or len(channel) < 3 or channel[0] != "choice":
            raise ValueError(f"no delta event carries channel {channel!r}")
        _, index, kind, *rest = channel
        delta: dict[str, Any]
        if kind == "content":
            delta = {"content": text}
        elif kind == "tool" and rest:
            delta = {"tool_calls": [{"index": rest[0], "function": {"arguments": text}}]}
        elif kind == "custom" and rest:
            call = {"index": rest[0], "type": "custom", "custom": {"input": text}}
            delta = {"tool_calls": [call]}
        elif kind == "function":
            delta = {"function_call": {"arguments": text}}
        else:
            raise ValueError(f"no delta event carries channel {channel!r}")
        base = dict_value(like.data)
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

    # ---- the offline provider -------------------------------------------------------------

    def last_user_text(self, body: dict[str, Any]) -> str:
        return user_text(body.get("messages"))

    def ends_with_tool_result(self, body: dict[str, Any]) -> bool:
        messages = body.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        return isinstance(last, dict) and last.get("role") in ("tool", "function")

    def function_tool(self, tool: dict[str, Any]) -> tuple[Any, Any] | None:
        if tool.get("type") != "function":
            return None
        function = dict_value(tool.get("function"))
        return function.get("name"), function.get("parameters")

    def offline(self, adapter: ProviderAdapter, body: Any, call: OfflineCall) -> OfflineReply:
        planned = plan(self, body, call)
        if body.get("stream") is True:
            options = dict_value(body.get("stream_options"))
            return stream_reply(adapter, _events(planned, options.get("include_usage") is True))
        return json_reply(adapter, _body(planned))


def _usage(u: TokenUsage) -> dict[str, Any]:
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


def _finish(call: Call) -> str:
    if call.tool is not None:
        return "tool_calls"
    return "length" if call.truncated else "stop"


def _body(call: Call) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if call.tool is not None:
        name, args = call.tool
        function = {"name": name, "arguments": args}
        message["tool_calls"] = [
            {"id": f"call_{call.ident[:24]}", "type": "function", "function": function}
        ]
    else:
        message["content"] = "".join(call.chunks)
    message["annotations"] = []
    finish = _finish(call)
    return {
        "id": f"chatcmpl-{call.ident}",
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": [
            {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
            for i in range(call.choices)
        ],
        "usage": _usage(call.usage),
        "service_tier": "default",
        "system_fingerprint": "fp_ironrt_offline",
    }


def _events(call: Call, include_usage: bool) -> list[bytes]:
    head = {
        "id": f"chatcmpl-{call.ident}",
        "object": "chat.completion.chunk",
        "created": call.created,
        "model": call.model,
        "service_tier": "default",
        "system_fingerprint": "fp_ironrt_offline",
    }

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        data = {**head, "choices": [choice]}
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
    finish = _finish(call)
    events.extend(chunk(i, {}, finish) for i in range(call.choices))
    if include_usage:
        events.append(sse_bytes({**head, "choices": [], "usage": _usage(call.usage)}))
    events.append(b"data: [DONE]\n\n")
    return events
