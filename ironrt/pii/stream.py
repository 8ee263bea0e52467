"""PII in text that arrives in pieces: a streamed completion, one channel at a time.

A finding may straddle two server-sent events (`jane.doe@exa` + `mple.com`), so each channel
keeps a tail back until it can no longer be the beginning of a finding, and never more:
the whole stream is never buffered. The contract, checked by property tests, is that for
any split of a text into pieces the output equals what the whole text gives at once.

How much is held back follows from the patterns (`detectors.py`): every short finding is at
most `SHORT_MAX` characters of a known alphabet (a run of `[\\w.%+@:()-]`, possibly preceded
by space-separated groups of digits, capitals and `ext`), so the tail to hold starts where
that shape starts. Long secrets and those with other characters (JWTs of any size, private
keys up to 1 MiB of body, base64-wrapped JWTs, Slack webhook URLs) are held from their
opening (`ey`, `-----BEGIN`, `ZXlK`, `hooks.slack.com/`) until they close or can no longer
be one (`_long_open`); while one is open, pieces that merely extend it are taken without a
rescan (`_Open`), so a secret of n characters costs O(n), however finely it is split. Each
rescan starts at the held tail with `CONTEXT` characters of already released text before
it, enough for every look-behind and for an email's local part.
"""

from __future__ import annotations

import re
import sys

from ironrt.pii.detectors import JSON_ESCAPE, blank_escape, scan
from ironrt.pii.finding import Finding, resolve
from ironrt.pii.redact import PLACEHOLDER_MAX, Placeholders
from ironrt.pii.rules import DEFAULT_RULES, Rules
from ironrt.pii.secrets import (
    JWT_HEADER_MAX,
    PEM_BODY_MAX,
    PEM_FOOTER_MAX,
    PEM_HEAD,
    PEM_HEAD_MAX,
    SLACK_HOOK_MAX,
    jwt_b64_head,
    jwt_b64_prefix_ok,
    jwt_prefix_ok,
    pem_body_ok,
    pem_end,
)

__all__ = ["CONTEXT", "SHORT_MAX", "StreamRedactor", "StreamRestorer", "StreamScanner"]

#: Longest finding other than a JWT or a private key (an email: 64 + 1 + 8 labels + TLD),
#: plus the look-ahead that decides where it ends.
SHORT_MAX = 640
#: Released text kept in front of the held tail for look-behinds and email local parts.
CONTEXT = 96
_PEM_SPAN = PEM_HEAD_MAX + PEM_BODY_MAX + PEM_FOOTER_MAX

# Matched against the reversed window: the last token, then whole groups before it.
_TAIL_REVERSED = re.compile(r"[\w.%+@:()/-]*(?: [A-Z0-9()+.ext-]+)*", re.ASCII)
# What an open JWT (base64-wrapped JWT, private key header, webhook URL) may look like so
# far: a prefix of the pattern in `secrets.py`, or more (holding back more is only slower).
# A JWT's end depends on two characters after it (`.x` would be a fourth segment): a dot
# after its `=` padding keeps it open too.
_JWT_OPEN = re.compile(r"ey(?<![\w.-]ey)[\w-]*(?:\.[\w./\\-]*)?={0,2}\.?\Z", re.ASCII)
_JWT_B64_OPEN = re.compile(r"ZXlK(?<![\w+/=\\-]ZXlK)[\w+/-]*={0,2}\Z", re.ASCII)
_PEM_HEAD_OPEN = re.compile(r"-----BEGIN[ A-Z0-9_-]*\Z", re.ASCII)
_HOOK_OPEN = re.compile(r"hooks\.slack\.com/[A-Za-z0-9+/]*\Z", re.ASCII)


def _tail_start(buf: str, lo: int) -> int:
    """Where the trailing text that could still begin a short finding starts."""
    m = _TAIL_REVERSED.match(buf[lo:][::-1])
    return len(buf) - (m.end() if m is not None else 0)


def _long_open(buf: str, lo: int) -> int:
    """Start of a JWT, private key or webhook URL still open at the end of `buf`, else its end."""
    n = len(buf)
    hold = min(_jwt_open(buf, lo), _pem_open(buf, lo))
    if "ZXlK" in buf:
        m = _JWT_B64_OPEN.search(buf, lo)
        if m is not None and jwt_b64_prefix_ok(buf, m.start(), m.end()):
            hold = min(hold, m.start())
    i = buf.rfind("hooks.slack.com/", max(lo, n - SLACK_HOOK_MAX))
    if i != -1 and _HOOK_OPEN.match(buf, i):
        hold = min(hold, i)
    return hold


#: Dead JWT candidates checked before holding from the next one unchecked (bounds the work
#: on text crafted with many `/ey` starts).
_JWT_TRIES = 8


def _jwt_open(buf: str, lo: int) -> int:
    n = len(buf)
    if "ey" not in buf:
        return n
    pos = lo
    for _ in range(_JWT_TRIES):
        m = _JWT_OPEN.search(buf, pos)
        if m is None:
            return n
        if jwt_prefix_ok(buf, m.start(), m.end()):
            return m.start()
        dot = buf.find(".", m.start(), m.end())
        if dot == -1:  # a header too long: nothing after it can start a JWT
            return n
        pos = dot + 1
    m = _JWT_OPEN.search(buf, pos)
    return n if m is None else m.start()


def _pem_open(buf: str, lo: int) -> int:
    """Start of the last private key header in `buf` if the key may still grow."""
    n = len(buf)
    i = buf.rfind("-----BEGIN", max(lo, n - _PEM_SPAN))
    if i == -1:
        return n
    head = PEM_HEAD.match(buf, i)
    if head is None:
        opening = n - i <= PEM_HEAD_MAX and _PEM_HEAD_OPEN.match(buf, i) is not None
        return i if opening else n
    _, footer = pem_end(buf, head)
    body = head.end()
    if footer or n - body > PEM_BODY_MAX + PEM_FOOTER_MAX or not pem_body_ok(buf, body, n):
        return n
    return i


class _Open:
    """A long secret that opens the held tail, and the text that extends it, open still.

    While only such text arrives, a rescan would hold the same tail and release nothing,
    so `StreamScanner.feed` skips it: a 64 KB JWT streamed four characters at a time is
    scanned a handful of times (when a dot or the end arrives), not 16,000 times over a
    growing tail. What "extends" means is read off `_long_open`: characters that can
    neither complete nor break the secret (no dot of a JWT, no dash of a key's footer, no
    colon of an armor header), within the length that keeps it open.
    """

    __slots__ = ("chars", "parts", "pending", "room")

    def __init__(self, chars: re.Pattern[str], room: int) -> None:
        self.chars = chars
        self.room = room  # characters it may still grow by
        # Text taken since the last scan, kept apart: appending each piece to the held
        # tail would copy the tail every time, quadratic again.
        self.parts: list[str] = []
        self.pending = 0

    def extends(self, text: str) -> bool:
        """Whether `text`, just arrived, keeps it open; if so it is taken."""
        if len(text) > self.room or self.chars.fullmatch(text) is None:
            return False
        self.parts.append(text)
        self.pending += len(text)
        self.room -= len(text)
        return True

    def joined(self, buf: str) -> str:
        """`buf` with the text taken."""
        return buf + "".join(self.parts) if self.parts else buf


_JWT_HEADER_CHARS = re.compile(r"[\w-]*", re.ASCII)
_JWT_BODY_CHARS = re.compile(r"[\w/\\-]*", re.ASCII)
_JWT_B64_CHARS = re.compile(r"[\w+/-]*", re.ASCII)
_PEM_CHARS = re.compile(r"[A-Za-z0-9+/=\s]*", re.ASCII)


def _open_at(buf: str, at: int) -> _Open | None:
    """The JWT or private key open from `at` to the end of `buf`, if one is."""
    n = len(buf)
    if buf.startswith("ey", at):
        if _jwt_open(buf, at) != at:
            return None
        dot = buf.find(".", at)
        if dot == -1:
            return _Open(_JWT_HEADER_CHARS, JWT_HEADER_MAX - (n - at))
        # After `=` padding nothing may follow; before the payload's `eyJ` a letter may fail.
        if buf.find("=", dot) != -1 or n - dot < 4:
            return None
        return _Open(_JWT_BODY_CHARS, sys.maxsize)
    if buf.startswith("ZXlK", at):
        m = _JWT_B64_OPEN.match(buf, at)
        head = jwt_b64_head(buf, at, n) if m is not None else None
        if head is None or buf.endswith("=") or not jwt_prefix_ok(head, 0, len(head)):
            return None
        dot = head.find(".")
        return _Open(_JWT_B64_CHARS, sys.maxsize) if -1 < dot < len(head) - 3 else None
    if buf.startswith("-----BEGIN", at):
        head_m = PEM_HEAD.match(buf, at)
        if head_m is None or _pem_open(buf, at) != at:
            return None
        line = max(buf.rfind("\n", at), buf.rfind("\r", at), buf.rfind("\\", at), at)
        if ":" in buf[line:]:  # an armor header may still be growing past its limit
            return None
        return _Open(_PEM_CHARS, PEM_BODY_MAX + PEM_FOOTER_MAX - (n - head_m.end()))
    return None


_HEX_TAIL = re.compile(r"[0-9A-Fa-f]{0,3}\Z")


def _mask(buf: str) -> tuple[str, int]:
    """JSON text as `find_pii(json_text=True)` scans it (every escape blanked), and where an
    escape its end cuts short (a lone backslash, `\\u` and under four digits) starts:
    `len(buf)` if none. `buf` must start outside an escape (`_escape_start` keeps it so).
    """
    parts: list[str] = []
    pos, last = 0, None
    for last in JSON_ESCAPE.finditer(buf):
        s, e = last.span()
        parts.append(buf[pos:s])
        parts.append(blank_escape(last.group()))
        pos = e
    parts.append(buf[pos:])
    cut = len(buf)
    if buf.endswith("\\") and pos < len(buf):  # a backslash nothing follows yet
        cut -= 1
    elif last is not None and last.group() == "\\u" and _HEX_TAIL.match(buf, pos):
        cut = last.start()
    return "".join(parts), cut


def _escape_start(buf: str, at: int) -> int:
    """`at`, or the start of the JSON escape `at` falls inside."""
    for m in JSON_ESCAPE.finditer(buf, 0, min(len(buf), at + 5)):
        if m.start() < at < m.end():
            return m.start()
    return at


def _hold(buf: str, lo: int, raw: list[Finding], rules: Rules, limit: int) -> int:
    """The first index of `buf` that cannot be released yet (at most `limit`)."""
    n = len(buf)
    hold = min(_tail_start(buf, max(lo, n - SHORT_MAX)), _long_open(buf, lo), limit)
    if rules.entity_width:  # a custom finding may hold any characters: keep its longest
        hold = min(hold, max(lo, n - rules.entity_width))
    # Never cut through a candidate: move the cut to its start.
    for f in sorted(raw, key=lambda f: f.start, reverse=True):
        if f.start < hold and (f.end > hold or f.end == n):
            hold = f.start
    return hold


class StreamScanner:
    """Finds PII in one channel's text as it arrives; reports each finding once, when final."""

    __slots__ = ("_batch", "_buf", "_ctx", "_open", "_rules", "_unscanned", "json_text")

    def __init__(
        self, batch: int = 0, rules: Rules = DEFAULT_RULES, *, json_text: bool = False
    ) -> None:
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
        self._open: _Open | None = None  # a long secret open from `_ctx` (see `_Open`)
        #: The text is JSON (streamed tool arguments): escapes separate words, as in
        #: `find_pii(json_text=True)`, and an escape is never cut. Set before the first
        #: text that is not blank.
        self.json_text = json_text

    @property
    def held(self) -> int:
        """Characters currently held back."""
        return len(self._buf) - self._ctx + (self._open.pending if self._open else 0)

    def feed(self, text: str) -> tuple[str, list[Finding]]:
        """Add `text`; return the text now final and the findings in it (offsets into it)."""
        if not text:
            return "", []
        if self._open is not None:
            if not (self.json_text and "\\" in text) and self._open.extends(text):
                return "", []
            self._buf, self._open = self._open.joined(self._buf), None
        buf = self._buf + text
        self._unscanned += len(text)
        if self._unscanned < self._batch:
            self._buf = buf
            return "", []
        self._unscanned = 0
        scanned, limit, raw = self._scan(buf)
        hold = _hold(scanned, self._ctx, raw, self._rules, limit)
        if scanned is not buf:  # a custom entity's width may end inside an escape
            hold = max(self._ctx, _escape_start(buf, hold))
        return self._release(buf, hold, raw, scanned)

    def flush(self) -> tuple[str, list[Finding]]:
        """The channel closed: release everything held."""
        buf = self._open.joined(self._buf) if self._open is not None else self._buf
        scanned, _, raw = self._scan(buf)
        out = self._release(buf, len(buf), raw, scanned)
        self._buf, self._ctx, self._unscanned = "", 0, 0
        return out

    def _scan(self, buf: str) -> tuple[str, int, list[Finding]]:
        """The text scanned (JSON escapes blanked), how far it may be released, candidates."""
        if not (self.json_text and "\\" in buf):
            return buf, len(buf), scan(buf, self._ctx, self._rules)
        scanned, limit = _mask(buf)
        raw = scan(scanned, self._ctx, self._rules)
        raw = [Finding(f.type, f.start, f.end, buf[f.start : f.end], f.kind) for f in raw]
        return scanned, limit, raw

    def _release(
        self, buf: str, hold: int, raw: list[Finding], scanned: str
    ) -> tuple[str, list[Finding]]:
        ctx = self._ctx
        found = resolve([f for f in raw if f.start < hold])
        if ctx:
            found = [Finding(f.type, f.start - ctx, f.end - ctx, f.value, f.kind) for f in found]
        keep = max(0, hold - CONTEXT)
        if scanned is not buf:
            keep = _escape_start(buf, keep)
        self._buf, self._ctx = buf[keep:], hold - keep
        self._open = _open_at(scanned[keep:], self._ctx)
        return buf[ctx:hold], found


class StreamRedactor:
    """Replaces findings with placeholders in a streamed text, holding back a bounded tail."""

    __slots__ = ("_placeholders", "_scanner")

    def __init__(
        self, placeholders: Placeholders, rules: Rules = DEFAULT_RULES, *, json_text: bool = False
    ) -> None:
        self._placeholders = placeholders
        self._scanner = StreamScanner(rules=rules, json_text=json_text)

    @property
    def json_text(self) -> bool:
        """The text is JSON: found as `find_pii(json_text=True)` finds it, values unescaped
        before they are mapped (as `Placeholders.redact(json_text=True)`)."""
        return self._scanner.json_text

    @json_text.setter
    def json_text(self, value: bool) -> None:
        self._scanner.json_text = value

    def feed(self, text: str) -> str:
        json_text = self._scanner.json_text
        return self._placeholders.redact(*self._scanner.feed(text), json_text=json_text)

    def flush(self) -> str:
        json_text = self._scanner.json_text
        return self._placeholders.redact(*self._scanner.flush(), json_text=json_text)


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
