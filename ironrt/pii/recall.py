"""The findings of texts scanned lately, so a text sent again is not scanned again.

A chat API is stateless: every call of an agent carries the whole conversation so far, its
system prompt, the user's messages, the model's earlier answers and the tools' results.
Scanning each call's text in full makes a conversation of n turns cost O(n²) scans of the
same messages. `find_pii` is a pure function of (text, json_text, rules), so the findings
of a text seen before can be handed back as they are: a lookup (hashing the text once,
~0.3 ns a character, and comparing it) instead of a scan (0.05-0.6 µs a character).

Bounded: at most `BUDGET_CHARS` characters of text are held (the oldest lookup goes first),
no text shorter than `MIN_CHARS` (scanning it costs about what the lookup does) or longer
than `LARGEST_CHARS` (one huge prompt would evict every conversation). The texts held are
the prompts' own, already in the daemon's memory while their calls run; nothing is kept
beyond these bounds, and nothing is written anywhere.
"""

from __future__ import annotations

import threading
from typing import TypeAlias

from ironrt.pii.finding import Finding
from ironrt.pii.rules import Rules

__all__ = ["BUDGET_CHARS", "LARGEST_CHARS", "MIN_CHARS", "RECALL", "Recall"]

#: Shorter texts are scanned every time: a few µs, about what a lookup costs.
MIN_CHARS = 256
#: Characters of text held in all.
BUDGET_CHARS = 4 * 1024 * 1024
#: Larger texts are not held.
LARGEST_CHARS = 1024 * 1024

#: (text, whether it is JSON text, the rules it was scanned with: compared by identity).
Key: TypeAlias = tuple[str, bool, Rules]


class Recall:
    """A bounded map of scanned texts to their findings, least recently used out first.

    Thread-safe: `find_pii` is public, and library mode may call it from any thread."""

    __slots__ = ("_chars", "_entries", "_lock", "budget", "largest")

    def __init__(self, budget: int = BUDGET_CHARS, largest: int = LARGEST_CHARS) -> None:
        self.budget = budget
        self.largest = min(largest, budget)
        self._entries: dict[Key, tuple[Finding, ...]] = {}
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chars(self) -> int:
        """Characters of text held now."""
        return self._chars

    def get(self, key: Key) -> tuple[Finding, ...] | None:
        with self._lock:
            found = self._entries.pop(key, None)
            if found is not None:
                self._entries[key] = found  # now the most recent
            return found

    def put(self, key: Key, found: tuple[Finding, ...]) -> None:
        size = len(key[0])
        if size > self.largest:
            return
        with self._lock:
            entries = self._entries
            if key in entries:
                return
            entries[key] = found
            self._chars += size
            while self._chars > self.budget:
                oldest = next(iter(entries))
                del entries[oldest]
                self._chars -= len(oldest[0])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._chars = 0


#: The process's: what `find_pii` and `find_steps` consult.
RECALL = Recall()
