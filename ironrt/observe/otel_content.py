"""Message content for spans (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`):
the prompt and the completion as the GenAI conventions' JSON (`gen_ai.input.messages`,
`gen_ai.system_instructions`, `gen_ai.output.messages`), bounded in size.

Read through the flow's text slots, so no provider's JSON shape is read here. The prompt
is `flow.body` after the policies ran: the PII policy rewrites it in place, so an agent
whose mode redacts has placeholders here, as the provider had. The completion is what
the relay collected from the provider's answer before the policies' response hooks
(`flow.output_texts`): placeholders the model echoed are not turned back into the
agent's values for telemetry. Only calls that reached a provider carry content: a call
refused (a PII block among them) never puts its prompt in a span.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ironrt.governance.flow import Flow

__all__ = ["MAX_CONTENT_CHARS", "input_messages", "output_messages"]

#: The most characters of text one attribute carries (the rest is cut, marked "…").
MAX_CONTENT_CHARS = 16_384
_ENCODE = msgspec.json.encode
_ROLES = {"system": "system", "tool_result": "tool"}


def input_messages(flow: Flow) -> tuple[str | None, str | None]:
    """(`gen_ai.input.messages`, `gen_ai.system_instructions`) as JSON text, or None."""
    if flow.body is None:
        return None, None
    messages = flow.body.get("messages")
    history: list[Any] = messages if isinstance(messages, list) else []
    system: list[dict[str, str]] = []
    out: list[dict[str, Any]] = []
    last_key: object = None
    budget = MAX_CONTENT_CHARS
    for slot in flow.request_texts():
        if budget <= 0:
            break
        text = slot.text[:budget]
        budget -= len(text)
        if slot.where == "system":
            system.append({"type": "text", "content": text})
            continue
        role, key = _role(slot.channel, slot.where, history)
        part: dict[str, Any]
        if slot.where == "tool_result":
            part = {"type": "tool_call_response", "response": text}
        elif slot.where == "tool_arguments":
            part = {"type": "tool_call", "arguments": text}
        else:
            part = {"type": "text", "content": text}
        if out and key == last_key:
            out[-1]["parts"].append(part)
        else:
            out.append({"role": role, "parts": [part]})
            last_key = key
    return (
        _ENCODE(out).decode() if out else None,
        _ENCODE(system).decode() if system else None,
    )


def output_messages(flow: Flow) -> str | None:
    """`gen_ai.output.messages` as JSON text (one assistant message), or None."""
    texts = flow.output_texts
    if not texts:
        return None
    text = "".join(texts)[:MAX_CONTENT_CHARS]
    return _ENCODE([{"role": "assistant", "parts": [{"type": "text", "content": text}]}]).decode()


def _role(channel: object, where: str, history: list[Any]) -> tuple[str, object]:
    """The role of the message a slot belongs to, and a key telling messages apart: both
    chat surfaces put a message's texts on channels `("request", i, ...)`."""
    if isinstance(channel, tuple) and len(channel) >= 2 and channel[0] == "request":
        index = channel[1]
        if isinstance(index, int) and 0 <= index < len(history):
            message = history[index]
            role = message.get("role") if isinstance(message, dict) else None
            if isinstance(role, str):
                return role, index
        return _ROLES.get(where, "user"), index
    return _ROLES.get(where, "user"), channel
