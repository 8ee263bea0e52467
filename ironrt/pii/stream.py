"""PII in text that arrives in pieces: a streamed completion, one channel at a time.

A finding may straddle two server-sent events (`jane.doe@exa` + `mple.com`), so each channel
keeps a tail back until it can no longer be the beginning of a finding, and never more:
the whole stream is never buffered. The contract, checked by property tests, is that for
any split of a text into pieces the output equals what the whole text gives at once.

How much is held back follows from the patterns (`detectors.py`): every short finding is at
most `SHORT_MAX` characters of a known alphabet (a run of `[\\w.%+@:()-]`, possibly preceded
by space-separated groups of digits, capitals and `ext`), so the tail to hold starts where
that shape starts; JWTs and PEM private keys, which may be kilobytes long, are held from
their unmistakable opening (`eyJ`, `-----BEGIN`) until they close or grow past the longest
accepted length. Each rescan starts at the held tail with `CONTEXT` characters of already
released text before it, enough for every look-behind and for an email's local part.
"""

from __future__ import annotations

import re

from ironrt.pii.detectors import scan
from ironrt.pii.finding import Finding, resolve
from ironrt.pii.redact import PLACEHOLDER_MAX, Placeholders
from ironrt.pii.rules import DEFAULT_RULES, Rules
from ironrt.pii.secrets import JWT_MAX, PEM_BODY, PEM_BODY_MAX, PEM_FOOTER_MAX, PEM_HEAD, pem_end

__all__ = ["CONTEXT", "SHORT_MAX", "StreamRedactor", "StreamRestorer", "StreamScanner"]

#: Longest finding other than a JWT or a private key (an email: 64 + 1 + 8 labels + TLD),
#: plus the look-ahead that decides where it ends.
SHORT_MAX = 640
#: Released text kept in front of the held tail for look-behinds and email local parts.
CONTEXT = 96
_PEM_SPAN = PEM_BODY_MAX + PEM_FOOTER_MAX + 128

# Matched against the reversed window: the last token, then whole groups before it.
_TAIL_REVERSED = re.compile(r"[\w.%+@:()-]*(?: [A-Z0-9()+.ext-]+)*", re.ASCII)
_JWT_OPEN = re.compile(r"eyJ[\w.-]*\Z", re.ASCII)


def _tail_start(buf: str, lo: int) -> int:
    """Where the trailing text that could still begin a short finding starts."""
    m = _TAIL_REVERSED.match(buf[lo:][::-1])
    return len(buf) - (m.end() if m is not None else 0)


def _long_open(buf: str, lo: int) -> int:
    """Start of a JWT or private key that is still open at the end of `buf`, else its end."""
    n = len(buf)
    hold = n
    if "eyJ" in buf:
        m = _JWT_OPEN.search(buf, max(lo, n - JWT_MAX))
        if m is not None:
            hold = m.start()
    i = buf.rfind("-----BEGIN", max(lo, n - _PEM_SPAN))
    if i != -1:
        head = PEM_HEAD.match(buf, i)
        if head is None:
            closed = n - i > 64  # a header is shorter than that
        else:
            _, footer = pem_end(buf, head)
            closed = (
                footer
                or n - head.end() >= _PEM_SPAN - 64
                or PEM_BODY.fullmatch(buf, head.end(), n) is None
            )
        if not closed:
            hold = min(hold, i)
    return hold


def _hold(buf: str, lo: int, raw: list[Finding], rules: Rules) -> int:
    """The first index of `buf` that cannot be released yet."""
    n = len(buf)
    hold = min(_tail_start(buf, max(lo, n - SHORT_MAX)), _long_open(buf, lo))
    if rules.entity_width:  # a custom finding may hold any characters: keep its longest
        hold = min(hold, max(lo, n - rules.entity_width))
    # Never cut through a candidate: move the cut to its start.
    for f in sorted(raw, key=lambda f: f.start, reverse=True):
        if f.start < hold and (f.end > hold or f.end == n):
            hold = f.start
    return hold


class StreamScanner:
    """Finds PII in one channel's text as it arrives; reports each finding once, when final."""

    __slots__ = ("_batch", "_buf", "_ctx", "_rules", "_unscanned")

    def __init__(self, batch: int = 0, rules: Rules = DEFAULT_RULES) -> None:
        """`batch`: scan only once that many characters arrived since the last scan.

        Each scan has a fixed cost of a few microseconds; a stream of one-token deltas is
        cheaper to scan every hundred characters than every four. Findings come later, not
        differently.
        """
        self._batch = batch
        self._rules = rules
        self._buf = ""  # released context, then the held tail
        self._ctx = 0  # where the held tail starts in `_buf`
        self._unscanned = 0

    @property
    def held(self) -> int:
        """Characters currently held back."""
        return len(self._buf) - self._ctx

    def feed(self, text: str) -> tuple[str, list[Finding]]:
        """Add `text`; return the text now final and the findings in it (offsets into it)."""
        if not text:
            return "", []
        buf = self._buf + text
        self._unscanned += len(text)
        if self._unscanned < self._batch:
            self._buf = buf
            return "", []
        self._unscanned = 0
        raw = scan(buf, self._ctx, self._rules)
        return self._release(buf, _hold(buf, self._ctx, raw, self._rules), raw)

    def flush(self) -> tuple[str, list[Finding]]:
        """The channel closed: release everything held."""
        buf = self._buf
        out = self._release(buf, len(buf), scan(buf, self._ctx, self._rules))
        self._buf, self._ctx, self._unscanned = "", 0, 0
        return out

    def _release(self, buf: str, hold: int, raw: list[Finding]) -> tuple[str, list[Finding]]:
        ctx = self._ctx
        found = resolve([f for f in raw if f.start < hold])
        if ctx:
            found = [Finding(f.type, f.start - ctx, f.end - ctx, f.value, f.kind) for f in found]
        keep = max(0, hold - CONTEXT)
        self._buf, self._ctx = buf[keep:], hold - keep
        return buf[ctx:hold], found


class StreamRedactor:
    """Replaces findings with placeholders in a streamed text, holding back a bounded tail."""

    __slots__ = ("_placeholders", "_scanner")

    def __init__(self, placeholders: Placeholders, rules: Rules = DEFAULT_RULES) -> None:
        self._placeholders = placeholders
        self._scanner = StreamScanner(rules=rules)

    def feed(self, text: str) -> str:
        return self._placeholders.redact(*self._scanner.feed(text))

    def flush(self) -> str:
        return self._placeholders.redact(*self._scanner.flush())


class StreamRestorer:
    """Puts original values back for placeholders in a streamed text.

    Only a tail that could be the beginning of a placeholder (`[EMAIL_`) is held, at most
    `PLACEHOLDER_MAX - 1` characters.
    """

    __slots__ = ("_buf", "_placeholders", "json_escape")

    _PARTIAL = re.compile(rf"\[(?:[A-Z][A-Z0-9_]{{0,{PLACEHOLDER_MAX - 3}}})?\Z")

    def __init__(self, placeholders: Placeholders, *, json_escape: bool = False) -> None:
        self._placeholders = placeholders
        #: The text is JSON (streamed tool arguments): restored values are escaped.
        self.json_escape = json_escape
        self._buf = ""

    @property
    def held(self) -> int:
        return len(self._buf)

    def feed(self, text: str) -> str:
        buf = self._buf + text
        cut = len(buf)
        i = buf.rfind("[", max(0, cut - PLACEHOLDER_MAX))
        if i != -1 and self._PARTIAL.match(buf, i):
            cut = i
        self._buf = buf[cut:]
        return self._placeholders.restore(buf[:cut], json_escape=self.json_escape)

    def flush(self) -> str:
        buf, self._buf = self._buf, ""
        return self._placeholders.restore(buf, json_escape=self.json_escape)
