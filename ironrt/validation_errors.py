"""msgspec's validation messages, taken apart once for everything that rewords them (the
apps file's errors, the client's start options)."""

from __future__ import annotations

import re

__all__ = ["split"]

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def split(text: str) -> tuple[str, str]:
    """msgspec's "MESSAGE - at `$PATH`" as (MESSAGE, PATH); PATH is '' when none is said
    (`.budget_usd`, `.env_overrides[...]`)."""
    match = _AT.match(text)
    assert match is not None  # the pattern matches any text
    return match["message"], match["path"] or ""
