"""One whole text scanned a piece at a time, so a large prompt never holds the event loop.

`find_pii` on 15 MiB of PII-dense text takes seconds (0.2-0.6 µs a character measured on
dense text, up to ~5 µs on crafted input such as runs of IPv6-like groups), and a single
regex search over the whole text can run for tens of milliseconds in C, uninterrupted.
`PieceScan` gives the same findings a piece at a time: each `step(size)` reads about
`size` new characters, so the caller decides how much work a step does and can let other
tasks run between steps (`ironrt/policies/pii.py`).

It rides on `StreamScanner`, whose contract (property-tested) is that any split of a text
gives the findings of the whole: a piece's end never cuts a finding, since the scanner holds
back a bounded tail that could still begin one. A step therefore costs about its piece plus
that tail (at most `SHORT_MAX`, or a private key's or JWT's longest span while one is open).

For JSON text (`json_text`) escapes are masked as `find_pii` masks them, piece by piece:
the mask of a piece ends after the last escape that starts in it, so no escape is cut and
the masked pieces join to the mask of the whole text.
"""

from __future__ import annotations

from ironrt.pii.detectors import JSON_ESCAPE, blank_escape
from ironrt.pii.finding import Finding
from ironrt.pii.rules import DEFAULT_RULES, Rules
from ironrt.pii.stream import StreamScanner

__all__ = ["PieceScan"]

#: Longest JSON escape (`\\uXXXX`).
_ESCAPE_MAX = 6


class PieceScan:
    """The findings of `find_pii(text, json_text=...)`, one stretch of `text` at a time.

    Each `step` returns the next stretch of `text` that is final and the findings in it
    (offsets relative to the stretch, values read from `text`); the stretches join to
    `text` and their findings, shifted, are `find_pii`'s, in order.
    """

    __slots__ = ("_escapes", "_fed", "_scanner", "_text", "done", "position")

    def __init__(self, text: str, *, json_text: bool = False, rules: Rules = DEFAULT_RULES) -> None:
        self._text = text
        self._escapes = json_text and "\\" in text
        self._scanner = StreamScanner(rules=rules)
        self._fed = 0  # characters of `text` given to the scanner
        #: Where the next stretch starts: characters of `text` released so far.
        self.position = 0
        self.done = not text

    @property
    def held(self) -> int:
        """Characters fed but not released yet: what the next step reads again."""
        return self._fed - self.position

    def step(self, size: int) -> tuple[str, list[Finding]]:
        """Read about `size` more characters (at least one); the last step flushes."""
        if self.done:
            return "", []
        text, start = self._text, self._fed
        end = min(len(text), start + max(1, size))
        piece, end = self._masked(start, end) if self._escapes else (text[start:end], end)
        self._fed = end
        if end < len(text):
            released, found = self._scanner.feed(piece)
        else:
            released, found = self._scanner.feed(piece)
            tail, more = self._scanner.flush()
            shift = len(released)
            found += [
                Finding(f.type, f.start + shift, f.end + shift, f.value, f.kind) for f in more
            ]
            released += tail
            self.done = True
        at = self.position
        stretch = text[at : at + len(released)]
        self.position = at + len(released)
        if self._escapes and found:  # values as the text has them, not as masked
            found = [
                Finding(f.type, f.start, f.end, stretch[f.start : f.end], f.kind) for f in found
            ]
        return stretch, found

    def _masked(self, start: int, end: int) -> tuple[str, int]:
        """`text[start:end']` with each JSON escape starting before `end` blanked, and `end'`.

        The whole-text mask resumes its search where its last escape ended, so beginning
        each piece where the previous one's last escape ended gives the same escapes. An
        escape starting before `end` ends before `end + _ESCAPE_MAX`, so bounding the search
        there never shortens one.
        """
        text = self._text
        parts: list[str] = []
        pos = start
        for m in JSON_ESCAPE.finditer(text, start, min(len(text), end + _ESCAPE_MAX - 1)):
            s, e = m.span()
            if s >= end:
                break
            parts.append(text[pos:s])
            parts.append(blank_escape(m.group()))
            pos = e
        end = max(end, pos)
        parts.append(text[pos:end])
        return "".join(parts), end
