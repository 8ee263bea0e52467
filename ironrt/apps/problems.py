"""What can be wrong with an apps file, and how it is said: one line that names the file,
the entry and the key, and what the key takes.

msgspec's messages name a path (`$.agents[...]`) and a type; a user wrote TOML, so they
are reworded here into the TOML the user wrote (`agents.bot.budget: expected a number of
USD, got "5"`), with a "did you mean" for a misspelt key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ironrt.apps.schema import EXPECTED
from ironrt.errors import AppsFileError as AppsFileError  # defined there, re-exported
from ironrt.suggest import closest
from ironrt.validation_errors import split

__all__ = [
    "AppsFileError",
    "BadValue",
    "about",
    "plain",
    "shown",
    "split",
    "toml_key",
    "type_error",
    "unknown_key",
]


class BadValue(Exception):
    """A bad value: `key` is the suffix of the entry's path (`.budget`, or "" for the
    entry as a whole). The reader turns it into an `AppsFileError` naming the entry."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = f".{key}" if key else ""
        self.message = message


@contextmanager
def about(key: str) -> Iterator[None]:
    """A checker's ValueError as a `BadValue` naming `key`."""
    try:
        yield
    except ValueError as exc:
        raise BadValue(key, plain(exc).removeprefix(f"`{key}` ")) from None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def unknown_key(message: str) -> str | None:
    """The key msgspec's "unknown field" message names, or None for another message."""
    match = re.fullmatch(r"Object contains unknown field `(.*)`", message)
    return match[1] if match else None


def type_error(where: str, table: dict[str, Any], text: str) -> str:
    """msgspec's error about one entry, reworded to name the key and say what it takes."""
    message, path = split(text)
    unknown = unknown_key(message)
    if unknown is not None:
        hint = closest(unknown, EXPECTED)
        known = f" (did you mean `{hint}`?)" if hint else f"; the keys are {', '.join(EXPECTED)}"
        return f"{where}: unknown key `{unknown}`{known}"
    key = re.split(r"[.\[]", path.lstrip("."), maxsplit=1)[0]
    if key not in EXPECTED:
        return f"{where}: {message}"
    value = table.get(key)
    if key == "env" and isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(item, str):
                return (
                    f"{where}.env.{toml_key(name)}: expected a string (quote it: "
                    f'"{shown(item)}"), got {shown(item)}'
                )
    return f"{where}.{key}: expected {EXPECTED[key]}, got {shown(value)}"


def toml_key(name: str) -> str:
    """A key as TOML writes it: bare if it can be, else quoted."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def shown(value: object) -> str:
    """A value as TOML writes it, cut short."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "a table"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def plain(exc: Exception) -> str:
    """An error's message alone (no trailing period): the line around it says where."""
    message = getattr(exc, "message", None) or str(exc)
    return str(message).rstrip(".")
