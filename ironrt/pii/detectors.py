"""Find PII in text: email, phone, payment card, US SSN, IBAN, IP address, secrets.

This runs on every prompt and completion the router forwards, so it is built for speed: a
family runs only if a cheap test of the whole text finds its marker (an `@`, a `:`, `sk-`),
every pattern starts with a character class the regex engine skips to in C (all number
formats share one such pattern, so one pass finds them all), and the expensive validation
(Luhn, mod-97, numbering plans) runs on the few candidates left. Patterns are
ASCII-only and every quantifier is bounded, which keeps a finding's extent local: whether
`text[i:j]` is a finding depends on at most a few characters around it, the property the
streaming scanner relies on to give the same answer as a scan of the whole text.

Candidates are bounded by look-arounds on both sides (no card number starts in the middle
of a longer digit run, no address inside a word), which is most of what keeps order
numbers, dates, versions, UUIDs and ISBNs out. Formats deliberately not reported: a bare
10-digit number unless a word such as "call" or "phone" precedes it (otherwise it reads as
an order number), national phone formats other than the North American one, lower-case
IBANs.
"""

from __future__ import annotations

import ipaddress
import re

from ironrt.pii.finding import Finding, resolve
from ironrt.pii.secrets import find_secrets
from ironrt.pii.validators import IBAN_LENGTHS, card_brand, iban_ok, ipv4_ok, phone_ok, ssn_ok

__all__ = ["find_pii", "scan"]

_A = re.ASCII

# --- email: anchored on '@', the local part is read leftwards --------------------------------
_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}([A-Za-z]{2,24})"
    r"(?![A-Za-z0-9-]|\.[A-Za-z0-9])",
    _A,
)
#: `icon@2x.png` is an asset name, not an address.
_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif"})


def _emails(text: str, start: int, out: list[Finding]) -> None:
    at = text.find("@", start)
    while at != -1:
        m = _DOMAIN.match(text, at + 1)
        if m is not None and m.group(1).lower() not in _FILE_SUFFIXES:
            s = at
            while s > 0 and at - s <= 64 and text[s - 1] in _LOCAL:
                s -= 1
            while s < at and text[s] == ".":
                s += 1
            local = text[s:at]
            if local and at - s <= 64 and local[-1] != "." and ".." not in local:
                out.append(Finding("EMAIL", s, m.end(), text[s : m.end()]))
        at = text.find("@", at + 1)


# --- numbers: phone, card, SSN, IBAN, IPv4 in one pass --------------------------------------
# Each family is (first character class, rest of the pattern). They are joined into one
# pattern that starts with a single character class, so the engine skips from candidate to
# candidate in C instead of trying every position: one pass instead of six.
_EXT = r"(?P<{}> ?(?:x|ext\.?) ?[0-9]{{1,6}})?"
_AREA = r"(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])"
_FAMILIES: dict[str, tuple[str, str]] = {
    "card": (
        "[0-9]",
        r"(?<![0-9][ -].)"
        r"(?:[0-9]{12,18}|[0-9]{3}(?P<csep>[ -])[0-9]{4,6}(?:(?P=csep)[0-9]{1,5}){1,3})"
        r"(?![0-9A-Za-z])",
    ),
    "ssn": (
        "[0-9]",
        r"(?<![-].)(?<![0-9] .)[0-9]{2}(?P<ssep>[ -])[0-9]{2}(?P=ssep)[0-9]{4}"
        r"(?![0-9A-Za-z-]|\.[0-9])",
    ),
    # "(415) ", "1 415-", "001-415-", "415-" then "555-2671".
    "nanp": (
        "[(0-9]",
        r"(?<![_+.-].)(?:(?<=\()[0-9]{3}\) ?|(?<=1)[ .-]?" + _AREA + r"|(?<=0)01[ .-]?" + _AREA
        + r"|(?<=[0-9])[0-9]{2}[ .-])[0-9]{3}[ .-][0-9]{4}" + _EXT.format("next")
        + r"(?![0-9A-Za-z]|[.-][0-9])",
    ),
    "intl": (
        "[+0]",
        r"(?<![_+].)(?<=\+|0(?=0))0?[1-9][0-9]{0,14}"
        r"(?:[ .-]?\([0-9]{1,4}\)[ .-]?[0-9]{1,12}|[ .-][0-9]{1,12}){0,8}" + _EXT.format("iext")
        + r"(?![0-9A-Za-z])",
    ),
    # Ten digits (or 1 + ten) with no separators: a phone only after a word saying so.
    "bare": ("[0-9]", r"(?<![_+.-].)(?:(?<=1)[0-9]{10}|[0-9]{9})(?![0-9A-Za-z]|[.-][0-9])"),
    "ipv4": (
        "[0-9]",
        r"(?<![_.].)[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?![0-9A-Za-z_]|\.[0-9])",
    ),
    "iban": ("[A-Z]", r"[A-Z][0-9]{2}(?: ?[0-9A-Z]){10,30}"),
}  # fmt: skip
_NO_ALNUM_BEFORE = r"(?<![0-9A-Za-z].)"
_NUMERIC = re.compile(
    r"[0-9(+A-Z]" + _NO_ALNUM_BEFORE + "(?:"
    + "|".join(f"(?<={first})(?P<{name}>{rest})" for name, (first, rest) in _FAMILIES.items())
    + ")",
    _A,
)  # fmt: skip
#: Each family alone, to retry the others where the first one matching failed validation.
_ALONE = {
    name: (re.compile(first, _A), re.compile(first + _NO_ALNUM_BEFORE + rest, _A))
    for name, (first, rest) in _FAMILIES.items()
}
_PIECE = re.compile(r"\(0\)|[0-9]+", _A)


def _intl(text: str, m: re.Match[str]) -> Finding | None:
    """The longest valid number in the match, trailing digit groups dropped if needed."""
    start, ext = m.start(), m.group("iext")
    core_end = m.start("iext") if ext else m.end()
    pieces = [(p.group(), p.end()) for p in _PIECE.finditer(text, start, core_end)]
    skip = 2 if text[start] == "0" else 0
    for k in range(len(pieces), 0, -1):
        digits = "".join(p for p, _ in pieces[:k] if p != "(0)")[skip:]
        if len(digits) < 7:
            return None
        if len(digits) <= 15 and phone_ok(digits):
            end = m.end() if k == len(pieces) else pieces[k - 1][1]
            return Finding("PHONE", start, end, text[start:end])
    return None


def _nanp(text: str, m: re.Match[str]) -> Finding | None:
    core = text[m.start() : m.start("next")] if m.group("next") else m.group()
    digits = "".join(c for c in core if c.isdigit())
    return Finding("PHONE", m.start(), m.end(), m.group()) if phone_ok(digits[-10:], 1) else None


#: Words that make a bare ten-digit number a phone number; without one it reads as an id.
_PHONE_WORDS = re.compile(
    r"\b(?:phone|tel|telephone|call|mobile|cell|fax|sms|text|whatsapp|reach|dial|ring)\b", re.I
)
_PHONE_WORDS_BEFORE = 40


def _bare(text: str, m: re.Match[str]) -> Finding | None:
    lo = max(0, m.start() - _PHONE_WORDS_BEFORE)
    if not _PHONE_WORDS.search(text, lo, m.start()) or not phone_ok(m.group()[-10:], 1):
        return None
    return Finding("PHONE", m.start(), m.end(), m.group())


def _card(text: str, m: re.Match[str]) -> Finding | None:
    sep = m.group("csep")
    if sep is None:
        brand = card_brand(m.group())
        return Finding("CARD", m.start(), m.end(), m.group(), brand) if brand else None
    groups = m.group().split(sep)
    for k in range(len(groups), 2, -1):  # a CVV or expiry may follow the last group
        digits = "".join(groups[:k])
        brand = card_brand(digits) if 13 <= len(digits) <= 19 else None
        if brand:
            end = m.start() + len(sep.join(groups[:k]))
            return Finding("CARD", m.start(), end, text[m.start() : end], brand)
    return None


def _ssn(text: str, m: re.Match[str]) -> Finding | None:
    v = m.group()
    ok = ssn_ok(v[0:3], v[4:6], v[7:11])
    return Finding("SSN", m.start(), m.end(), v) if ok else None


#: Per IBAN length: that many characters, single spaces allowed between them.
_IBAN_SPANS = {
    n: re.compile(rf"(?:[0-9A-Z] ?){{{n - 1}}}[0-9A-Z](?![0-9A-Za-z])", _A)
    for n in set(IBAN_LENGTHS.values())
}


def _iban(text: str, m: re.Match[str]) -> Finding | None:
    want = IBAN_LENGTHS.get(m.group()[:2])
    span = _IBAN_SPANS[want].match(text, m.start()) if want is not None else None
    if span is None or not iban_ok(span.group().replace(" ", "")):
        return None
    return Finding("IBAN", m.start(), span.end(), span.group())


def _ipv4(text: str, m: re.Match[str]) -> Finding | None:
    ok = ipv4_ok(m.group().split("."))
    return Finding("IP", m.start(), m.end(), m.group(), "ipv4") if ok else None


_CHECKS = {
    "card": _card, "ssn": _ssn, "nanp": _nanp, "intl": _intl, "bare": _bare, "ipv4": _ipv4,
    "iban": _iban,
}  # fmt: skip


def _numbers(text: str, start: int, out: list[Finding]) -> None:
    pos = start
    while (m := _NUMERIC.search(text, pos)) is not None:
        name = m.lastgroup
        assert name is not None
        found = _CHECKS[name](text, m)
        if found is None:
            found = _retry(text, m.start(), name)
        if found is None:
            pos = m.start() + 1
        else:
            out.append(found)
            pos = found.end


def _retry(text: str, at: int, failed: str) -> Finding | None:
    for name, (first, alone) in _ALONE.items():
        if name != failed and first.match(text, at) and (m := alone.match(text, at)):
            found = _CHECKS[name](text, m)
            if found is not None:
                return found
    return None


# --- IP addresses ---------------------------------------------------------------------------
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z_:.])[0-9A-Fa-f:]{2,39}(?:\.[0-9]{1,3}){0,3}(?![0-9A-Za-z_:]|\.[0-9])", _A
)
_HEX_COLON = frozenset("0123456789abcdefABCDEF:")


def _ipv6_ok(candidate: str) -> bool:
    if candidate.count(":") < 2 or candidate == "::":
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _ipv6s(text: str, start: int, out: list[Finding]) -> None:
    # Anchored on ':' (rare in prose) rather than on hex letters (a quarter of English words).
    colon = text.find(":", start)
    while colon != -1:
        s = colon
        while s > 0 and colon - s < 40 and text[s - 1] in _HEX_COLON:
            s -= 1
        m = _IPV6.match(text, s)
        if m is None:
            colon = text.find(":", colon + 1)
            continue
        value = m.group()
        if not _ipv6_ok(value) and value.endswith(":") and _ipv6_ok(value[:-1]):
            value = value[:-1]
        if _ipv6_ok(value):
            out.append(Finding("IP", s, s + len(value), value, "ipv6"))
        colon = text.find(":", max(m.end(), colon + 1))


_JSON_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|.)", re.DOTALL)


def find_pii(text: str, start: int = 0, *, json_text: bool = False) -> list[Finding]:
    """All findings in `text` that start at or after `start`, in order, none overlapping.

    Characters before `start` are still read as context (look-behinds, an email's local
    part), which is how the streaming scanner rescans only its held-back tail.

    `json_text`: `text` is JSON (tool-call arguments as a string), so an escape such as
    `\\n` separates words: `"line\\njane@x.io"` holds `jane@x.io`, not `njane@x.io`, and a
    placeholder put in its place never lands right after a backslash.
    """
    scanned = text
    if json_text and "\\" in text:
        scanned = _JSON_ESCAPE.sub(lambda m: " " * len(m.group()), text)
    raw = scan(scanned, start)
    if not raw:
        return raw
    if scanned is not text:
        raw = [Finding(f.type, f.start, f.end, text[f.start : f.end], f.kind) for f in raw]
    return resolve(raw)


def scan(text: str, start: int = 0) -> list[Finding]:
    """Every candidate finding, overlaps included (the streaming scanner needs them all)."""
    out: list[Finding] = []
    if "@" in text:
        _emails(text, start, out)
    _numbers(text, start, out)
    if ":" in text:
        _ipv6s(text, start, out)
    find_secrets(text, start, out)
    if start and out:
        out = [f for f in out if f.start >= start]
    return out
