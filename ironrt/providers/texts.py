"""Reading provider JSON: numbers and objects as they come, and the text inside bodies
and events as `TextSlot`s that write in place. Shared by every API surface.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import msgspec

from ironrt.governance.flow import StreamEvent, TextSlot

__all__ = [
    "content_slots",
    "dict_value",
    "event_setter",
    "int_value",
    "json_string_slots",
    "json_text_slot",
    "noop",
    "str_setter",
]


def int_value(value: Any) -> int:
    """A usage number from provider JSON: ints as they are, anything else as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def dict_value(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def str_setter(container: Any, key: Any, on_change: Callable[[], None]) -> Callable[[str], None]:
    """A setter writing text into `container[key]` (dict key or list index)."""

    def setter(text: str) -> None:
        container[key] = text
        on_change()

    return setter


def noop() -> None:
    """An `on_change` for slots of bodies nobody needs to be told about."""
    return None


def event_setter(ev: StreamEvent, container: Any, key: Any) -> Callable[[str], None]:
    """A slot setter for text inside a stream event: writes it and marks the event."""

    def setter(text: str) -> None:
        container[key] = text
        ev.changed = True

    return setter


def json_string_slots(
    value: Any,
    channel: tuple[Hashable, ...],
    where: str,
    on_change: Callable[[], None],
    out: list[TextSlot],
) -> None:
    """Every string inside a decoded JSON value (tool input), as slots writing in place.

    Exposing the leaves instead of a JSON text keeps the value valid JSON whatever a
    policy writes (a placeholder with a quote in it cannot break the structure).
    """
    stack: list[tuple[Any, tuple[Hashable, ...]]] = [(value, channel)]
    while stack:
        node, path = stack.pop()
        items: Any = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(item, str):
                out.append(TextSlot((*path, key), item, str_setter(node, key, on_change), where))
            elif isinstance(item, dict | list):
                stack.append((item, (*path, key)))


def json_text_slot(
    container: Any,
    key: Any,
    channel: tuple[Hashable, ...],
    where: str,
    on_change: Callable[[], None],
) -> TextSlot:
    """A decoded JSON value (`container[key]`, a model's tool input) as one JSON text, the
    text its stream carries: setting it decodes the text back in place.

    For what the model wrote, rather than the leaves of `json_string_slots`: a policy
    reads JSON text as JSON (escapes, a value restored escaped), as it reads the same input
    streamed (`input_json_delta`), so both give the agent the same value; a restored value
    lands in a leaf decoded, never as its JSON escapes. A text that is no longer JSON
    raises (`msgspec.DecodeError`, a `ValueError`): the policy fails closed.
    """
    text = msgspec.json.encode(container[key]).decode()

    def setter(new: str) -> None:
        container[key] = msgspec.json.decode(new)
        on_change()

    return TextSlot(channel, text, setter, where)


def content_slots(
    container: dict[str, Any],
    key: str,
    channel: tuple[Hashable, ...],
    where: str,
    on_change: Callable[[], None],
    out: list[TextSlot],
    text_types: tuple[str, ...] = ("text",),
) -> None:
    """Slots for `container[key]` when it is a string or a list of typed text parts.

    Both APIs let message content be a plain string or a list of parts such as
    `{"type": "text", "text": ...}`; parts of other types (images, files) have no text.
    """
    value = container.get(key)
    if isinstance(value, str):
        out.append(TextSlot(channel, value, str_setter(container, key, on_change), where))
    elif isinstance(value, list):
        for j, part in enumerate(value):
            if isinstance(part, dict) and part.get("type") in text_types:
                text = part.get("text")
                if isinstance(text, str):
                    setter = str_setter(part, "text", on_change)
                    out.append(TextSlot((*channel, j), text, setter, where))
