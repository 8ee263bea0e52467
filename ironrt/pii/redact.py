"""Typed placeholders for one call: `[EMAIL_1]` out, the original value back in.

In redact mode the provider sees `[EMAIL_1]` where the prompt had an address, and when the
model echoes `[EMAIL_1]` the agent gets its address back: the agent keeps working with the
data it owns while the data never leaves the machine. The map lives for one call only, so
nothing is kept after the call settles; within a call the same value always gets the same
placeholder, so the model can tell two mentions of one address from two addresses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from ironrt.pii.entities import MAX_NAME
from ironrt.pii.finding import PII_TYPES, Finding

__all__ = ["PLACEHOLDER", "PLACEHOLDER_MAX", "NovelPlaceholders", "Placeholders"]

#: A complete placeholder of a built-in type or a custom entity (`[EMPLOYEE_ID_3]`); only
#: ones this call issued are restored.
PLACEHOLDER = re.compile(rf"\[[A-Z][A-Z0-9_]{{0,{MAX_NAME - 1}}}_[1-9][0-9]{{0,5}}\]")
#: Longest placeholder text: a longest entity name, `_`, six digits, brackets.
PLACEHOLDER_MAX = 2 + max(MAX_NAME, *map(len, PII_TYPES)) + 1 + 6


class Placeholders:
    """The two-way map between values and placeholders for one call."""

    __slots__ = ("_counts", "_originals", "_placeholders")

    def __init__(self) -> None:
        self._placeholders: dict[tuple[str, str], str] = {}
        self._originals: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._originals)

    def knows(self, type_: str, value: str) -> bool:
        """Whether `value` was issued a placeholder in this call (it is the agent's own)."""
        return (type_, value) in self._placeholders

    def placeholder(self, type_: str, value: str) -> str:
        """The placeholder for `value`, issuing the next one of its type if it is new."""
        key = (type_, value)
        found = self._placeholders.get(key)
        if found is None:
            n = self._counts.get(type_, 0) + 1
            self._counts[type_] = n
            found = f"[{type_}_{n}]"
            self._placeholders[key] = found
            self._originals[found] = value
        return found

    def redact(self, text: str, findings: Iterable[Finding], *, json_text: bool = False) -> str:
        """`text` with each finding (non-overlapping, in order) replaced by its placeholder.

        `json_text`: `text` is itself JSON, so values are unescaped before they are mapped.
        """
        parts: list[str] = []
        pos = 0
        for f in findings:
            parts.append(text[pos : f.start])
            parts.append(self.placeholder(f.type, _unescape(f.value) if json_text else f.value))
            pos = f.end
        if not parts:
            return text
        parts.append(text[pos:])
        return "".join(parts)

    def restore(self, text: str, *, json_escape: bool = False) -> str:
        """`text` with every placeholder this call issued replaced by its original value.

        `json_escape` is for text that is itself JSON (tool-call arguments): a value with a
        quote, backslash or newline (a private key) must not break the document it lands in.
        """
        if not self._originals or "[" not in text:
            return text

        def original(m: re.Match[str]) -> str:
            value = self._originals.get(m.group())
            if value is None:
                return m.group()
            return json.dumps(value)[1:-1] if json_escape else value

        return PLACEHOLDER.sub(original, text)


class NovelPlaceholders(Placeholders):
    """Placeholders for what the model produced itself, sparing the agent's own values.

    In redact mode a completion's findings are replaced too, except values the agent sent
    (those came back through `restore` and are the agent's to see).
    """

    __slots__ = ("_known",)

    def __init__(self, known: Placeholders) -> None:
        super().__init__()
        self._known = known
        # Numbering goes on from the request's: `[EMAIL_2]` is plainly not the agent's `[EMAIL_1]`.
        self._counts.update(known._counts)

    def redact(self, text: str, findings: Iterable[Finding], *, json_text: bool = False) -> str:
        known = self._known
        novel = [
            f
            for f in findings
            if not (known.knows(f.type, f.value) or known.knows(f.type, _unescape(f.value)))
        ]
        return super().redact(text, novel, json_text=json_text)


def _unescape(value: str) -> str:
    """A value as it reads inside a JSON string (`\\n`), as it reads once decoded."""
    if "\\" not in value:
        return value
    try:
        decoded = json.loads(f'"{value}"')
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value
