"""The findings of texts scanned lately, so a text sent again is not scanned again.

A chat API is stateless: every call of an agent carries the whole conversation so far, its
system prompt, the user's messages, the model's earlier answers and the tools' results.
Scanning each call's text in full makes a conversation of n turns cost O(n²) scans of the
same messages. `find_pii` is a pure function of (text, json_text, rules), so the findings
of a text seen before can be handed back as they are: a lookup (hashing the text once,
~0.3 ns a character, and comparing it) instead of a scan (0.05-0.6 µs a character).

Bounded: what it holds takes at most `IRONRT_PII_RECALL_SIZE` of memory (4 MiB), texts and
findings counted (the oldest lookup goes first); no text shorter than `MIN_CHARS` is held
(scanning it costs about what the lookup does), nor longer than `LARGEST_CHARS`, nor looked
up (one huge prompt would evict every conversation, and hashing 15 MiB holds the loop for
milliseconds the stepped scan of `steps.py` exists to give back). The texts held are the
prompts' own, already in the daemon's memory while their calls run; nothing is kept beyond
these bounds, and nothing is written anywhere. It is the process's, shared by its agents (a
system prompt fifty agents send is scanned once); since a lookup is faster than a scan, an
agent timing its calls could tell whether a text it already knows word for word was sent
lately by another: `IRONRT_PII_RECALL_SIZE=0` where that matters (docs/pii.md).

What is held is made of strings and ints only: each key a (text, JSON or not, the rules'
serial) tuple, each entry's findings one flat tuple of their fields. The garbage collector
stops following such tuples the first time it meets them; held as `Finding` objects keyed
by the `Rules` object, a full recall was tens of thousands of objects every collection
walked again, and a daemon scanning a new prompt each call spent more on its collections
than the recall saved (bench/router.py, 3 KB prompts with PII, c=1: +0.06-0.12 ms CPU a
call). A recalled scan is rebuilt into new `Finding` objects (~0.3 µs each).
"""

from __future__ import annotations

import sys
import threading
from itertools import chain
from operator import attrgetter
from typing import TypeAlias, cast

from ironrt.pii.finding import Counts, Finding, count_types, new_finding
from ironrt.pii.rules import Rules
from ironrt.values import DEFAULT_PII_RECALL_BYTES

__all__ = ["LARGEST_CHARS", "MIN_CHARS", "RECALL", "Recall"]

#: Shorter texts are scanned every time: a few µs, about what a lookup costs.
MIN_CHARS = 256
#: What an entry costs besides its text and findings: the map's slot and the key tuple.
_ENTRY_BYTES = 150
#: What one (type, count) pair of an entry's counts costs (the pair; the type is shared).
_COUNT_BYTES = 72
#: What a string costs besides its characters (`sys.getsizeof("")`, rounded up).
_STR_BYTES = 56
#: Larger texts are not held.
LARGEST_CHARS = 1024 * 1024

#: (text, whether it is JSON text, the serial of the rules it was scanned with).
Key: TypeAlias = tuple[str, bool, int]
#: Each finding's type, start, end, value and kind, one after the other.
Packed: TypeAlias = tuple[str | int, ...]


_FIELDS = attrgetter("type", "start", "end", "value", "kind")


def _pack(found: list[Finding]) -> Packed:
    return tuple(chain.from_iterable(map(_FIELDS, found)))


def _unpack(packed: Packed) -> list[Finding]:
    it = iter(packed)  # five at a time, in the fields' order
    return list(map(new_finding, it, it, it, it, it))  # type: ignore[arg-type]


class Recall:
    """A bounded map of scanned texts to their findings, least recently used out first.

    Thread-safe: `find_pii` is public, and library mode may call it from any thread."""

    __slots__ = ("_entries", "_lock", "_size", "budget", "hits", "largest", "misses")

    def __init__(
        self, budget: int = DEFAULT_PII_RECALL_BYTES, largest: int = LARGEST_CHARS
    ) -> None:
        self.budget = budget
        self.largest = largest
        #: Each entry's findings, what the entry costs, and its findings counted by type
        #: (what a call that only detects or blocks needs: no findings built for it).
        self._entries: dict[Key, tuple[Packed, int, Counts]] = {}
        self._size = 0
        self._lock = threading.Lock()
        #: Lookups that found their text, and those that did not (`ironrt_pii_recall_*`).
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held now (as `cost` counts them)."""
        return self._size

    @staticmethod
    def cost(text: str, packed: Packed, counts: Counts = ()) -> int:
        """The memory an entry holds: its text, its findings (their values are strings of
        their own), their counts, the map's slot."""
        values = cast("tuple[str, ...]", packed[3::5])  # strings: ~50 bytes + characters
        size = sys.getsizeof(text) + sys.getsizeof(packed) + _ENTRY_BYTES
        size += sys.getsizeof(counts) + _COUNT_BYTES * len(counts)
        return size + sum(map(len, values)) + _STR_BYTES * len(values)

    def holds(self, text: str) -> bool:
        """Whether a text of this length may be held (and so is worth looking up)."""
        return self.budget > 0 and MIN_CHARS <= len(text) <= self.largest

    def get(self, text: str, json_text: bool, rules: Rules) -> list[Finding] | None:
        """The findings of `text` scanned with `rules` lately (new objects), or None."""
        entry = self._lookup((text, json_text, rules.serial))
        return None if entry is None else _unpack(entry[0])

    def counts(self, text: str, json_text: bool, rules: Rules) -> Counts | None:
        """`get`'s findings counted by type, without building them, or None."""
        entry = self._lookup((text, json_text, rules.serial))
        return None if entry is None else entry[2]

    def _lookup(self, key: Key) -> tuple[Packed, int, Counts] | None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries[key] = entry  # now the most recent
        return entry

    def put(
        self,
        text: str,
        json_text: bool,
        rules: Rules,
        found: list[Finding],
        counts: Counts | None = None,
    ) -> None:
        """Keep `text`'s findings; `counts`, if the caller has them, their `count_types`."""
        if len(text) > self.largest:
            return
        key = (text, json_text, rules.serial)
        packed = _pack(found)
        if counts is None:
            counts = count_types(cast("tuple[str, ...]", packed[0::5]))
        cost = self.cost(text, packed, counts)
        if cost > self.budget:
            return
        with self._lock:
            entries = self._entries
            if key in entries:
                return
            entries[key] = (packed, cost, counts)
            self._size += cost
            while self._size > self.budget:
                oldest = next(iter(entries))
                self._size -= entries.pop(oldest)[1]

    def resize(self, budget: int) -> None:
        """Hold at most `budget` bytes from now on (0: nothing), the oldest out first."""
        with self._lock:
            self.budget = budget
            entries = self._entries
            while self._size > budget and entries:
                self._size -= entries.pop(next(iter(entries)))[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0


#: The process's: what `find_pii` and `find_steps` consult. Sized to the settings'
#: `IRONRT_PII_RECALL_SIZE` where a process's settings are applied, once: the daemon's start
#: and library mode's kernel (one a process), not each router built (tests build many).
RECALL = Recall()
