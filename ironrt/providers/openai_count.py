"""Exact input counts for OpenAI calls: the `POST /v1/responses/input_tokens` request.

OpenAI counts input tokens only in the Responses format, so a chat completions call is
counted by translating it (`chat_to_responses_input`) and adding a margin for what chat's
own framing may cost beyond that (`count_margin`). Pure functions over request bodies;
`OpenAIAdapter.count_request`/`count_margin` delegate here, which keeps the translation
out of the adapter's stream and text handling.
"""

from __future__ import annotations

from typing import Any

from ironrt.governance.flow import Endpoint
from ironrt.providers.texts import dict_value

__all__ = [
    "SERVER_TOOLS",
    "chat_to_responses_input",
    "count_margin",
    "count_request",
    "server_tools",
]

#: Built-in Responses tools whose results enter the model's input without being in the body.
SERVER_TOOLS = ("web_search", "file_search", "mcp", "code_interpreter", "computer")

_COUNT_PATH = "/v1/responses/input_tokens"
#: The body fields `POST /v1/responses/input_tokens` accepts.
_COUNT_FIELDS = (
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "previous_response_id",
    "conversation",
    "reasoning",
    "text",
    "truncation",
)
_CHAT_MESSAGE_MARGIN = 4
_CHAT_BASE_MARGIN = 8
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class _Untranslatable(Exception):
    """A chat request holds something the Responses format cannot express."""


def server_tools(tools: Any) -> bool:
    """Whether `tools` holds a built-in server tool (see `SERVER_TOOLS`)."""
    return isinstance(tools, list) and any(
        isinstance(t, dict) and str(t.get("type", "")).startswith(SERVER_TOOLS) for t in tools
    )


def chat_to_responses_input(body: dict[str, Any]) -> dict[str, Any] | None:
    """A chat completions request as a `POST /v1/responses/input_tokens` body.

    Every text the chat call is billed for lands in the translation, unchanged, so the
    count covers it: system/developer/user messages stay messages (text parts become
    `input_text`, `image_url` parts `input_image`, `file` parts `input_file`), assistant
    text becomes `output_text`, assistant `tool_calls` become `function_call` (or
    `custom_tool_call`) items, `tool` messages `function_call_output` items, and the
    legacy `function_call`/`function` pair the same with a made-up call id. Tools,
    `tool_choice`, `parallel_tool_calls`, `reasoning_effort`, `response_format` and
    `verbosity` are translated; chat-only parameters (sampling, `n`, streaming, output
    caps, ...) are dropped. None when something has no Responses equivalent.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    try:
        out: dict[str, Any] = {"input": _chat_items(messages)}
        tools = _chat_tools(body)
        choice = _chat_tool_choice(body)
    except _Untranslatable:
        return None
    model = body.get("model")
    if isinstance(model, str):
        out["model"] = model
    if tools:
        out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice
    if isinstance(body.get("parallel_tool_calls"), bool):
        out["parallel_tool_calls"] = body["parallel_tool_calls"]
    if isinstance(body.get("reasoning_effort"), str):
        out["reasoning"] = {"effort": body["reasoning_effort"]}
    text = _chat_text_config(body)
    if text:
        out["text"] = text
    return out


def _chat_items(messages: list[Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    custom_calls: set[str] = set()
    legacy_calls: list[tuple[str, str]] = []  # (name, call_id) of legacy calls unanswered
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _Untranslatable
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer", "user"):
            items.append({"role": role, "content": _input_content(content)})
        elif role == "assistant":
            if msg.get("audio") is not None:
                raise _Untranslatable  # a reference to earlier audio output
            parts = _assistant_content(content, msg.get("refusal"))
            if parts:
                items.append({"role": "assistant", "content": parts})
            for j, call in enumerate(msg.get("tool_calls") or ()):
                items.append(_tool_call_item(call, f"call_{i}_{j}", custom_calls))
            function = msg.get("function_call")
            if isinstance(function, dict):
                call_id = f"call_legacy_{i}"
                name = _str(function.get("name"))
                legacy_calls.append((name, call_id))
                items.append(_function_call(call_id, name, function.get("arguments")))
        elif role == "tool":
            call_id = _str(msg.get("tool_call_id"))
            kind = "custom_tool_call_output" if call_id in custom_calls else "function_call_output"
            items.append({"type": kind, "call_id": call_id, "output": _tool_output(content)})
        elif role == "function":
            name = _str(msg.get("name"))
            pending = [k for k, (n, _) in enumerate(legacy_calls) if n == name]
            if pending:
                _, call_id = legacy_calls.pop(pending[-1])
            else:  # an answer with no call in the history: give it one
                call_id = f"call_legacy_{i}"
                items.append(_function_call(call_id, name, ""))
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": _tool_output(content),
                }
            )
        else:
            raise _Untranslatable
    return items


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _function_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": _str(arguments)}


def _tool_call_item(call: Any, fallback_id: str, custom_calls: set[str]) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise _Untranslatable
    call_id = _str(call.get("id")) or fallback_id
    kind = call.get("type", "function")
    if kind == "function":
        function = dict_value(call.get("function"))
        return _function_call(call_id, _str(function.get("name")), function.get("arguments"))
    if kind == "custom":
        custom = dict_value(call.get("custom"))
        custom_calls.add(call_id)
        return {
            "type": "custom_tool_call",
            "call_id": call_id,
            "name": _str(custom.get("name")),
            "input": _str(custom.get("input")),
        }
    raise _Untranslatable


def _input_content(content: Any) -> str | list[dict[str, Any]]:
    """User/system content: a string stays a string, parts become Responses input parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _Untranslatable
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": _str(part.get("text"))})
        elif kind == "image_url":
            image = part.get("image_url")
            image = image if isinstance(image, dict) else {"url": image}
            detail = image.get("detail")
            parts.append(
                {
                    "type": "input_image",
                    "image_url": _str(image.get("url")),
                    "detail": detail if detail in ("low", "high", "auto") else "auto",
                }
            )
        elif kind == "file":
            spec = dict_value(part.get("file"))
            item = {"type": "input_file"}
            item.update({k: spec[k] for k in ("file_id", "file_data", "filename") if k in spec})
            parts.append(item)
        else:
            raise _Untranslatable  # input_audio and parts yet unknown
    return parts


def _assistant_content(content: Any, refusal: Any) -> str | list[dict[str, Any]]:
    """Assistant content: text as `output_text`, refusals as `refusal` parts."""
    if isinstance(content, str) and not refusal:
        return content
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        parts.append({"type": "output_text", "text": content})
    elif isinstance(content, list):
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "output_text", "text": _str(part.get("text"))})
            elif kind == "refusal":
                parts.append({"type": "refusal", "refusal": _str(part.get("refusal"))})
            else:
                raise _Untranslatable
    elif content is not None:
        raise _Untranslatable
    if isinstance(refusal, str) and refusal:
        parts.append({"type": "refusal", "refusal": refusal})
    return parts


def _tool_output(content: Any) -> str | list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _Untranslatable
    return [
        {"type": "input_text", "text": _str(part.get("text"))}
        for part in content
        if isinstance(part, dict) and part.get("type") == "text"
    ]


def _function_tool(function: dict[str, Any]) -> dict[str, Any]:
    """A chat function definition as a Responses function tool.

    `strict` defaults to false in chat and to true in Responses (where it would reject a
    schema that is not strict-compatible): it is always sent explicitly.
    """
    name = function.get("name")
    if not isinstance(name, str):
        raise _Untranslatable
    tool: dict[str, Any] = {
        "type": "function",
        "name": name,
        "parameters": function.get("parameters") or _NO_PARAMETERS,
        "strict": function.get("strict") is True,
    }
    if isinstance(function.get("description"), str):
        tool["description"] = function["description"]
    return tool


def _chat_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    for tool in body.get("tools") or ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            tools.append(_function_tool(dict_value(tool.get("function"))))
        elif kind == "custom":
            custom = dict_value(tool.get("custom"))
            item: dict[str, Any] = {"type": "custom", "name": _str(custom.get("name"))}
            item.update({k: custom[k] for k in ("description", "format") if k in custom})
            tools.append(item)
        else:
            raise _Untranslatable
    for function in body.get("functions") or ():  # the legacy form of function tools
        tools.append(_function_tool(dict_value(function)))
    return tools


def _tool_ref(ref: Any) -> dict[str, Any]:
    """A chat reference to one tool (`{"type": "function", "function": {"name"}}`)."""
    ref = dict_value(ref)
    kind = ref.get("type", "function")
    inner = dict_value(ref.get(kind)) if isinstance(kind, str) else {}
    return {"type": kind, "name": _str(inner.get("name") or ref.get("name"))}


def _chat_tool_choice(body: dict[str, Any]) -> Any:
    choice = body.get("tool_choice")
    if choice is None:
        choice = body.get("function_call")  # legacy: "none", "auto" or {"name"}
        if isinstance(choice, dict):
            return {"type": "function", "name": _str(choice.get("name"))}
    if isinstance(choice, str) or choice is None:
        return choice
    choice = dict_value(choice)
    if choice.get("type") == "allowed_tools":
        allowed = dict_value(choice.get("allowed_tools"))
        return {
            "type": "allowed_tools",
            "mode": allowed.get("mode", "auto"),
            "tools": [_tool_ref(t) for t in allowed.get("tools") or ()],
        }
    if choice.get("type") in ("function", "custom"):
        return _tool_ref(choice)
    return None


def _chat_text_config(body: dict[str, Any]) -> dict[str, Any]:
    """`response_format` and `verbosity` as the Responses `text` parameter."""
    text: dict[str, Any] = {}
    fmt = dict_value(body.get("response_format"))
    if fmt.get("type") == "json_schema":
        schema = dict_value(fmt.get("json_schema"))
        text["format"] = {"type": "json_schema", **schema}
    elif fmt.get("type") in ("json_object", "text"):
        text["format"] = {"type": fmt["type"]}
    if isinstance(body.get("verbosity"), str):
        text["verbosity"] = body["verbosity"]
    return text


def count_request(endpoint: Endpoint, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """`POST /v1/responses/input_tokens` with the call's input in Responses format.

    A Responses call passes through (the count endpoint's fields only); a chat call is
    translated (`chat_to_responses_input`). None when the input cannot be counted up
    front: built-in server tools (`web_search`, `file_search`, ...) and chat's
    `web_search_options` add their results to the billed input during the call, a
    stored `prompt` template is not accepted by the count endpoint, and chat parts
    with no Responses equivalent (audio) cannot be translated.
    """
    if endpoint == "responses":
        if body.get("prompt") is not None or server_tools(body.get("tools")):
            return None
        payload = {k: body[k] for k in _COUNT_FIELDS if k in body}
        return _COUNT_PATH, payload
    if endpoint == "chat.completions":
        if body.get("web_search_options") is not None:
            return None
        translated = chat_to_responses_input(body)
        return None if translated is None else (_COUNT_PATH, translated)
    return None


def count_margin(endpoint: Endpoint, body: dict[str, Any]) -> int:
    """Tokens the Responses count may miss of what the same input costs as a chat call.

    A chat prompt is billed as rendered messages: the OpenAI cookbook's count is 3
    tokens of framing per message, 1 more for a `name`, and 3 to prime the reply. The
    Responses format frames the same content its own way and has no per-message
    `name`, so the margin is a safe excess over that: 4 per message and 4 per tool
    call (chat renders calls inside the assistant message, Responses as items), the
    UTF-8 bytes of every `name` plus 1 (a token covers at least one byte), and 8 for
    reply priming. Responses calls are counted in their own format: margin 0.
    """
    if endpoint != "chat.completions":
        return 0
    margin = _CHAT_BASE_MARGIN
    for msg in body.get("messages") or ():
        margin += _CHAT_MESSAGE_MARGIN
        if not isinstance(msg, dict):
            continue
        calls = msg.get("tool_calls")
        if isinstance(calls, list):
            margin += _CHAT_MESSAGE_MARGIN * len(calls)
        if msg.get("function_call") is not None:
            margin += _CHAT_MESSAGE_MARGIN
        name = msg.get("name")
        if isinstance(name, str) and name:
            margin += len(name.encode()) + 1
    return margin
