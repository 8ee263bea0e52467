"""Phone numbers written as at home (no country code), and digit runs a cue word explains.

`030 1234 5678`, `(11) 91234-5678`, `03-1234-5678`, `08425/347993`: which country's number
it is depends on who wrote it, so these are read only for the regions an operator
configured (`Rules.regions`) and validated against those regions' numbering plans
(`validators.national_phone_ok`). The North American format has its own pattern in
`detectors.py` and is read when US or CA (any country code 1 region) is configured.

A national number written with separators in a plausible grouping is a finding by itself;
a bare digit run is one only after a cue word (`cues.py`), as is a run that starts with a
configured region's country code but has lost its `+` (`mobile: 442079460018`), and a
nine-digit run after an SSN cue is an SSN. What keeps the rest out: a trunk prefix is
required wherever the region writes one (most digit groups in prose do not start with
`0`); without one the grouping must be the region's own; a word naming an id right
before the number (`Order 030 1234 5678`) makes it one; and shapes that belong to
something else are refused unless a cue says "phone": card groups (`1234 5678 9012`),
SSNs (`912-34-5678`), ISBNs (`0-306-40615-2`), dotted quads, ZIP+4 (`12345-6789`), dotted
thousands (`612.345.678`). The pattern (`detectors.py`) only takes groups after the area
code that share one separator (not `2024-01-15 1030`).
"""

from __future__ import annotations

import functools
import re

from ironrt.pii.cues import NONE, PHONE, SSN, cue_before, id_word_before
from ironrt.pii.finding import Finding, new_finding
from ironrt.pii.rules import Rules
from ironrt.pii.validators import national_phone_ok, phone_ok, ssn_ok

__all__ = [
    "DIGITS_MIN",
    "bare_number",
    "national_number",
    "national_span",
    "region_plan",
    "regions_of",
]

#: Fewest digits of a national number read in running text (trunk prefix included): dates
#: (`15.01.2024`, `2024 01 15`) and short codes have fewer.
DIGITS_MIN = 9
#: Most digits of one (trunk prefix included: German numbers reach 13); longer runs are ids.
DIGITS_MAX = 13

_GROUP = re.compile(r"[0-9]+", re.ASCII)
#: Verdicts cached per candidate, as in `detectors.py`.
VERDICTS = 4096


@functools.lru_cache(maxsize=64)
def regions_of(regions: tuple[str, ...]) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    """Whether the North American format is read, the other regions, all country codes."""
    from phonenumbers import country_code_for_region  # not at import: see validators.py

    codes = tuple(dict.fromkeys(str(country_code_for_region(r)) for r in regions))
    nanp = "1" in codes
    return nanp, tuple(r for r in regions if country_code_for_region(r) != 1), codes


def region_plan(rules: Rules) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    """`regions_of(rules.regions)`, kept on the rules once asked (the cache's key, a tuple
    of a dozen regions hashed on every call, cost more than the rest of a number's check)."""
    plan = rules.region_plan
    if plan is None:
        plan = regions_of(rules.regions)
        object.__setattr__(rules, "region_plan", plan)
    return plan


def _other_shape(groups: list[str], seps: str) -> bool:
    """Digit groups written as something other than a phone number usually is."""
    k = len(groups)
    if min(map(len, groups)) == 1:
        return True  # single digits (ISBNs)
    if k >= 3 and all(len(g) == 4 for g in groups):
        return True  # card groups
    if seps == "." * (k - 1):
        if k == 4 and all(len(g) <= 3 for g in groups):
            return True  # a dotted quad
        if len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:]):
            return True  # thousands
    sizes = [len(g) for g in groups]
    if sizes == [3, 2, 4] and seps[0] == seps[1]:
        return True  # an SSN (one in a never-issued range, or it would be one)
    return seps == "-" and sizes == [5, 4]  # ZIP+4


@functools.lru_cache(maxsize=4096)
def national_span(value: str, regions: tuple[str, ...], cued: bool) -> int:
    """How much of `value` (digit groups) is a national number: its length, or 0.

    The whole of `value` is tried first, then with trailing groups dropped where a space
    parts them (`030 1234 5678 2023` is a number and a year; `086-9775259-2306714` is one
    token, an order id). `cued`: a cue word precedes it, so the grouping is not
    questioned (only the numbering plan is). -1: too few digits even for a cue to help.
    """
    found = list(_GROUP.finditer(value))
    groups = [m.group() for m in found]
    if sum(map(len, groups)) < DIGITS_MIN:
        return -1
    if groups[0].startswith("00"):  # an international call prefix, not a trunk prefix
        return 0
    parens = value[0] == "("
    for k in range(len(groups), 1, -1):
        digits = "".join(groups[:k])
        if len(digits) < DIGITS_MIN:
            break
        if k < len(groups) and value[found[k].start() - 1] != " ":
            continue
        if len(digits) > DIGITS_MAX:
            continue
        end = found[k - 1].end()
        if not cued:
            # The character before each group after the first: `(030) 1234` has " ".
            seps = "".join(value[m.start() - 1] for m in found[1:k])
            if _other_shape(groups[:k], seps):
                continue
        sizes = () if cued else tuple(map(len, groups[:k]))
        if any(national_phone_ok(digits, r, sizes, parens) for r in regions):
            return end
    return 0


#: Characters that make the number after them an amount (`€612 345 678`).
_CURRENCY = frozenset("$€£¥₹")


def national_number(text: str, m: re.Match[str], rules: Rules) -> Finding | None:
    """A national number in a configured region's format; without a cue, in plausible groups."""
    national = region_plan(rules)[1]
    start = m.start()
    if not national or _CURRENCY.intersection(text[start - 2 if start > 1 else 0 : start]):
        return None
    value = m.group()
    n = national_span(value, national, False)
    if n == 0 and cue_before(text, start) == PHONE:
        n = national_span(value, national, True)
    if n <= 0 or id_word_before(text, start):
        return None
    return new_finding("PHONE", start, start + n, value[:n])


@functools.lru_cache(maxsize=VERDICTS)
def _ssn_digits_ok(v: str) -> bool:
    return ssn_ok(v[0:3], v[3:5], v[5:9])


@functools.lru_cache(maxsize=VERDICTS)
def _bare_phone_ok(value: str, regions: tuple[str, ...]) -> bool:
    """A national number of a configured region, or one with its country code, no `+`."""
    nanp, national, codes = regions_of(regions)
    n = len(value)
    if nanp and (n == 10 or (n == 11 and value[0] == "1")) and phone_ok(value[-10:], 1):
        return True
    if any(national_phone_ok(value, r) for r in national):
        return True
    return any(value.startswith(c) and phone_ok(value[len(c) :], int(c)) for c in codes)


def bare_number(text: str, m: re.Match[str], rules: Rules) -> Finding | None:
    """A digit run is an SSN or a phone number only after a cue word saying which."""
    start, value = m.start(), m.group()
    cue = cue_before(text, start)
    if cue == NONE:
        return None
    if cue == SSN:
        ok = len(value) == 9 and _ssn_digits_ok(value)
        return new_finding("SSN", start, m.end(), value) if ok else None
    ok = cue == PHONE and _bare_phone_ok(value, rules.regions)
    return new_finding("PHONE", start, m.end(), value) if ok else None
