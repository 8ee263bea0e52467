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
numbers, dates, versions, UUIDs and ISBNs out. What a number is may also depend on the
words before it, read in a bounded window around the candidate only (`cues.py`): a bare
nine-digit run is an SSN after "SSN:" and a bare 9-15 digit run a phone number after
"phone" or "Telefon", and neither without such a word (it reads as an order number, an
ISBN, a timestamp); a dotted quad after "version" or `Chrome/` is a version. National
phone formats (`030 1234 5678`, `(11) 91234-5678`) are read for the regions in
`Rules.regions` only, written with separators or after a cue (`national.py`). Addresses
that name no one (loopback, documentation, multicast) are never reported, private ones
as `Rules.private_ips` says (`ips.py`). Not reported: lower-case IBANs, national numbers
of regions not configured, national numbers written as a bare digit run without a cue.
"""

from __future__ import annotations

import functools
import re

from ironrt.pii.entities import find_entities
from ironrt.pii.finding import Counts, Finding, count_findings, new_finding, resolve
from ironrt.pii.ips import NEVER, PRIVATE, ipv4_class, ipv6_class, version_before
from ironrt.pii.national import bare_number, national_number, region_plan
from ironrt.pii.recall import RECALL
from ironrt.pii.rules import DEFAULT_RULES, Rules
from ironrt.pii.secrets import find_secrets
from ironrt.pii.validators import IBAN_LENGTHS, card_brand, iban_ok, ipv4_ok, phone_ok, ssn_ok

__all__ = ["JSON_ESCAPE", "blank_escape", "count_pii", "find_pii", "scan"]

_A = re.ASCII

# --- email: anchored on '@', the local part is read leftwards --------------------------------
_LOCAL = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-"
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
            # The local part: the run of local characters ending at `at` (at most 65 read,
            # more than 64 is rejected), without its leading dots. `rstrip` finds it in C.
            window = text[at - 65 if at > 65 else 0 : at]
            local = window[len(window.rstrip(_LOCAL)) :].lstrip(".")
            if 0 < len(local) <= 64 and local[-1] != "." and ".." not in local:
                s, end = at - len(local), m.end()
                out.append(new_finding("EMAIL", s, end, text[s:end]))
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
        r"(?:[0-9]{11,18}|[0-9]{3}(?P<csep>[ -])[0-9]{4,6}(?:(?P=csep)[0-9]{1,5}){1,3})"
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
    # 9-15 digits with no separators: an SSN or a phone number only after a cue word.
    "bare": ("[0-9]", r"(?<![_+.-].)[0-9]{8,14}(?![0-9A-Za-z]|[.-][0-9])"),
    "ipv4": (
        "[0-9]",
        r"(?<![_.].)[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}"
        r"(?![0-9A-Za-z_]|\.[0-9]|-[A-Za-z])",  # `1.2.3.4-beta` is a version
    ),
    # A national phone number: an area code "(030) ", "030 ", "030/", "03-", "080(1170)"
    # then digit groups, one separator between them; not the second group of a longer
    # number ("+1 123 456 7890"), a time or an amount ("10:30 2023...", "1,234.56 ...").
    "natl": (
        "[(0-9]",
        # At least 9 digits, or no number: a cheap test of 9 characters (a single-set
        # repeat) weeds out most digits before the exact one.
        r"(?<![_+.-].)(?<![0-9][ .,:-].)(?=[0-9 ./()-]{9})(?=(?:[ ./()-]{0,2}[0-9]){8})"
        r"(?:(?<=\()[0-9]{1,5}\)[ .-]?|(?<=[0-9])[0-9]{0,5}(?:[ ./-]|\([0-9]{1,5}\)))"
        r"[0-9]{1,8}(?:(?P<nsep>[ .-])[0-9]{1,8}(?:(?P=nsep)[0-9]{1,8}){0,3})?"
        r"(?![0-9A-Za-z]|[./:-][0-9])",
    ),
    "iban": ("[A-Z]", r"[A-Z][0-9]{2}(?: ?[0-9A-Z]){10,30}"),
}  # fmt: skip
_NO_ALNUM_BEFORE = r"(?<![0-9A-Za-z].)"


def _alternatives(names: list[str]) -> str:
    return "|".join(f"(?<={_FAMILIES[n][0]})(?P<{n}>{_FAMILIES[n][1]})" for n in names)


# A capital can only start an IBAN, so that branch comes first and the others are tried as
# one group behind a single test (capitals start many words; this spares them six look-
# behinds). No other branch can match where the IBAN one can, so the order is unchanged.
_NUMERIC = re.compile(
    r"[0-9(+A-Z]" + _NO_ALNUM_BEFORE + "(?:" + _alternatives(["iban"]) + "|(?<![A-Z])(?:"
    + _alternatives([n for n in _FAMILIES if n != "iban"]) + "))",
    _A,
)  # fmt: skip
_PIECE = re.compile(r"\(0\)|[0-9]+", _A)


def _intl(text: str, m: re.Match[str], rules: Rules) -> Finding | None:
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
            return new_finding("PHONE", start, end, text[start:end])
    return None


#: What a North American match holds besides digits (before any extension).
_NANP_SEPARATORS = str.maketrans("", "", "() .-")


#: Validation verdicts are cached per candidate text, as `phone_ok` caches numbers: the same
#: values come back on every turn of a conversation, and on every rescan of a stream's tail.
_VERDICTS = 4096


@functools.lru_cache(maxsize=_VERDICTS)
def _nanp_ok(core: str) -> bool:
    return phone_ok(core.translate(_NANP_SEPARATORS)[-10:], 1)


def _nanp(text: str, m: re.Match[str], rules: Rules) -> Finding | None:
    if not region_plan(rules)[0]:  # no country code 1 region configured
        return None
    start, end = m.span()
    nxt = m.start("next")
    ok = _nanp_ok(text[start : nxt if nxt != -1 else end])
    return new_finding("PHONE", start, end, text[start:end]) if ok else None


@functools.lru_cache(maxsize=_VERDICTS)
def _card_number(value: str, sep: str | None) -> tuple[int, str] | None:
    """How long the card number that `value` starts with is, and its brand."""
    if sep is None:
        brand = card_brand(value)
        return (len(value), brand) if brand else None
    groups = value.split(sep)
    for k in range(len(groups), 2, -1):  # a CVV or expiry may follow the last group
        digits = "".join(groups[:k])
        brand = card_brand(digits) if 12 <= len(digits) <= 19 else None
        if brand:
            return len(sep.join(groups[:k])), brand
    return None


def _card(text: str, m: re.Match[str], rules: Rules) -> Finding | None:
    found = _card_number(m.group(), m.group("csep"))
    if found is None:
        return None
    start = m.start()
    end = start + found[0]
    return new_finding("CARD", start, end, text[start:end], found[1])


@functools.lru_cache(maxsize=_VERDICTS)
def _ssn_ok(v: str) -> bool:
    return ssn_ok(v[0:3], v[4:6], v[7:11])


def _ssn(text: str, m: re.Match[str], rules: Rules) -> Finding | None:
    start, end = m.span()
    v = text[start:end]
    return new_finding("SSN", start, end, v) if _ssn_ok(v) else None


#: Per IBAN length: that many characters, single spaces allowed between them.
_IBAN_SPANS = {
    n: re.compile(rf"(?:[0-9A-Z] ?){{{n - 1}}}[0-9A-Z](?![0-9A-Za-z])", _A)
    for n in set(IBAN_LENGTHS.values())
}


def _iban(text: str, m: re.Match[str], rules: Rules) -> Finding | None:
    want = IBAN_LENGTHS.get(m.group()[:2])
    span = _IBAN_SPANS[want].match(text, m.start()) if want is not None else None
    if span is None or not iban_ok(span.group().replace(" ", "")):
        return None
    return new_finding("IBAN", m.start(), span.end(), span.group())


@functools.lru_cache(maxsize=_VERDICTS)
def _ipv4_class(value: str) -> int:
    return ipv4_class(value) if ipv4_ok(value.split(".")) else NEVER


def _ip_reported(cls: int, rules: Rules) -> bool:
    return cls > PRIVATE or (cls == PRIVATE and rules.private_ips)


def _ipv4(text: str, m: re.Match[str], rules: Rules) -> Finding | None:
    start, end = m.span()
    value = text[start:end]
    if not _ip_reported(_ipv4_class(value), rules) or version_before(text, start):
        return None
    return new_finding("IP", start, end, value, "ipv4")


_CHECKS = {
    "card": _card, "ssn": _ssn, "nanp": _nanp, "intl": _intl, "bare": bare_number,
    "ipv4": _ipv4, "natl": national_number, "iban": _iban,
}  # fmt: skip


#: Every ASCII digit to `0`, anything else to `x`. `text.encode("ascii", "replace")` has one
#: byte per character, so in the result `find(b"0")` finds the next digit with memchr.
_DIGIT_MASK = bytes.maketrans(bytes(range(256)), b"x" * 48 + b"0" * 10 + b"x" * 198)
_DIGIT = re.compile("[0-9]")
#: A candidate starts at most this many characters before its first digit (`DE89...`).
_LEAD = 2
#: Below this many characters to scan, the mask costs more than it saves (a stream's tail).
_MASK_MIN = 256


def _numbers(text: str, start: int, out: list[Finding], rules: Rules) -> None:
    # Every number format holds a digit within `_LEAD` characters of its start. The regex
    # engine reads a few ns a character looking for one of its first characters, memchr far
    # less, so on longer text each search starts at the next digit, skipping the text
    # between candidates (most of it); text without a digit is not searched at all.
    mask = None
    if len(text) - start >= _MASK_MIN:
        if not any(map(text.__contains__, "0123456789")):
            return
        mask = text.encode("ascii", "replace").translate(_DIGIT_MASK)
    elif _DIGIT.search(text, start) is None:
        # Short text (a chat turn, a stream's tail): one pass of a single class finds
        # whether there is a digit at all, where the number pattern would stop at every
        # capital (an IBAN's first letter) and try its branches there.
        return
    search, checks = _NUMERIC.search, _CHECKS
    pos = start
    while True:
        at = pos
        if mask is not None:
            at = mask.find(b"0", pos) - _LEAD
            if at < -_LEAD:
                return
            if at < pos:
                at = pos
        m = search(text, at)
        if m is None:
            return
        name = m.lastgroup
        assert name is not None
        found = checks[name](text, m, rules)
        if found is None:
            found = _retry(text, m.start(), name, rules)
        if found is None:
            pos = m.start() + 1
        else:
            out.append(found)
            pos = found.end


#: Per family, the families `_NUMERIC` tries after it, as one pattern. Where a family
#: matched, every family before it failed to match at that position, so only the later ones
#: are worth a retry (a date only the national family matches costs no retry at all), and
#: one `match` finds the first of them that matches, as `_NUMERIC` would have.
_ORDER = ["iban", *(n for n in _FAMILIES if n != "iban")]
_RETRY = {
    name: re.compile(r"[0-9(+]" + _NO_ALNUM_BEFORE + "(?:" + _alternatives(later) + ")", _A)
    for i, name in enumerate(_ORDER)
    if (later := _ORDER[i + 1 :])
}


def _retry(text: str, at: int, failed: str, rules: Rules) -> Finding | None:
    while (again := _RETRY.get(failed)) is not None and (m := again.match(text, at)):
        name = m.lastgroup
        assert name is not None
        found = _CHECKS[name](text, m, rules)
        if found is not None:
            return found
        failed = name
    return None


# --- IP addresses ---------------------------------------------------------------------------
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z_:.])[0-9A-Fa-f:]{2,39}(?:\.[0-9]{1,3}){0,3}(?![0-9A-Za-z_:]|\.[0-9])", _A
)
_HEX_COLON = frozenset("0123456789abcdefABCDEF:")


def _ipv6_class(candidate: str) -> int | None:
    """`ips.ipv6_class`, None for what is no address (a time, `std::`, a MAC address)."""
    if candidate.count(":") < 2:
        return None
    return ipv6_class(candidate)


def _ipv6s(text: str, start: int, out: list[Finding], rules: Rules) -> None:
    # Anchored on ':' (rare in prose) rather than on hex letters (a quarter of English words).
    colon = text.find(":", start)
    while colon != -1:
        # A label's colon (`Contact: ...`, `https://`) has no hex digit or colon on either
        # side, so no candidate of at least two such characters can hold it.
        before, after = text[colon - 1 : colon], text[colon + 1 : colon + 2]
        if before not in _HEX_COLON and after not in _HEX_COLON:
            colon = text.find(":", colon + 1)
            continue
        s = colon
        while s > 0 and colon - s < 40 and text[s - 1] in _HEX_COLON:
            s -= 1
        m = _IPV6.match(text, s)
        if m is None:
            colon = text.find(":", colon + 1)
            continue
        value = m.group()
        cls = _ipv6_class(value)
        if cls is None and value.endswith(":"):
            value = value[:-1]
            cls = _ipv6_class(value)
        if cls is not None and _ip_reported(cls, rules):
            out.append(new_finding("IP", s, s + len(value), value, "ipv6"))
        colon = text.find(":", max(m.end(), colon + 1))


#: A JSON string escape: `find_pii` reads each as blanks in JSON text (`blank_escape`;
#: `pieces.py` and `stream.py` too).
JSON_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|.)", re.DOTALL)


def blank_escape(escape: str) -> str:
    """What JSON text is read as in place of `escape`, as long as it: spaces, but a line
    break for `\\n` and `\\r`, where the text the JSON holds breaks its line (a private
    key's armor header ends there, and does not run on to the end of the JSON)."""
    if escape == "\\n" or escape == "\\r":
        return " \n"
    return " " * len(escape)


def find_pii(
    text: str, start: int = 0, *, json_text: bool = False, rules: Rules = DEFAULT_RULES
) -> list[Finding]:
    """All findings in `text` that start at or after `start`, in order, none overlapping.

    Characters before `start` are still read as context (look-behinds, an email's local
    part), which is how the streaming scanner rescans only its held-back tail.

    `json_text`: `text` is JSON (tool-call arguments as a string), so an escape such as
    `\\n` separates words: `"line\\njane@x.io"` holds `jane@x.io`, not `njane@x.io`, and a
    placeholder put in its place never lands right after a backslash.

    A text of 256 characters to 1 MiB scanned from its start is looked up first among those
    scanned lately (`recall.py`): a conversation's earlier messages come again every call.
    """
    if start == 0 and RECALL.holds(text):
        found = RECALL.get(text, json_text, rules)
        if found is None:
            found = _find_pii(text, 0, json_text, rules)
            RECALL.put(text, json_text, rules, found)
        return found
    return _find_pii(text, start, json_text, rules)


def count_pii(text: str, *, json_text: bool = False, rules: Rules = DEFAULT_RULES) -> Counts:
    """`find_pii`'s findings counted by type: all a check that detects or blocks needs.

    A text recalled (a conversation's history, resent every call) is answered with the
    counts kept with its findings, none of them built: for a 3 KB prompt dense with PII,
    36 objects a call that only their types were read from.
    """
    if RECALL.holds(text):
        counts = RECALL.counts(text, json_text, rules)
        if counts is None:
            found = _find_pii(text, 0, json_text, rules)
            counts = count_findings(found)
            RECALL.put(text, json_text, rules, found, counts)
        return counts
    found = _find_pii(text, 0, json_text, rules)
    return count_findings(found) if found else ()


def _find_pii(text: str, start: int, json_text: bool, rules: Rules) -> list[Finding]:
    scanned = text
    if json_text and "\\" in text:
        scanned = JSON_ESCAPE.sub(lambda m: blank_escape(m.group()), text)
    raw = scan(scanned, start, rules)
    if not raw:
        return raw
    if scanned is not text:
        raw = [new_finding(f.type, f.start, f.end, text[f.start : f.end], f.kind) for f in raw]
    return resolve(raw)


def scan(text: str, start: int = 0, rules: Rules = DEFAULT_RULES) -> list[Finding]:
    """Every candidate finding, overlaps included (the streaming scanner needs them all).

    Only the types `rules` wants are reported: one an agent does not act on must not win an
    overlap against one it does.
    """
    out: list[Finding] = []
    wants = rules.wants
    if "@" in text and wants("EMAIL"):
        _emails(text, start, out)
    _numbers(text, start, out, rules)
    if text.count(":") > 1 and wants("IP"):  # an IPv6 address holds two colons at least
        _ipv6s(text, start, out, rules)
    if wants("SECRET"):
        find_secrets(text, start, out)
    for entity in rules.entities:
        if wants(entity.name):
            find_entities(text, start, entity, out)
    if start and out:
        out = [f for f in out if f.start >= start]
    if rules.types is not None and out:
        out = [f for f in out if f.type in rules.types]
    return out
