"""Checksums and structure rules that turn a pattern match into a finding.

A regex alone flags order numbers, dates and versions; these checks are what keeps a 16-digit
number failing Luhn, an SSN in a never-issued range or an IBAN with a wrong check digit from
being reported. They run only on candidates the patterns already matched, so each may cost a
few microseconds; none does I/O. Phone numbers are checked against the numbering plans that
ship with `phonenumbers` (its metadata is the authority), but matched here with one compiled
pattern per plan: `phonenumbers.parse` + `is_valid_number` cost 70-100 µs a number, which
alone would spend the whole scan budget.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from phonenumbers.phonemetadata import NumberFormat, PhoneNumberDesc

# phonenumbers is imported where a phone number is first checked (~40 ms of imports, and
# more of regexes per numbering plan): the daemon's router answers before that, and
# `ironrt.pii.warm` loads it in the background right after (see its docstring).

__all__ = [
    "IBAN_LENGTHS",
    "card_brand",
    "github_checksum_ok",
    "iban_ok",
    "ipv4_ok",
    "jwt_header_ok",
    "luhn_ok",
    "national_phone_ok",
    "phone_ok",
    "ssn_ok",
]

_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


#: Each digit doubled and its two digits summed, as `_DOUBLED` says.
_DOUBLE_DIGITS = str.maketrans("0123456789", "".join(map(str, _DOUBLED)))


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number carries in its last digit."""
    if digits.isascii() and digits.isdigit():
        # Fast path, no Python loop: double every second digit from the right by table,
        # then the digit sum of an ASCII string is its byte sum less 48 per character.
        s = digits[-1::-2] + digits[-2::-2].translate(_DOUBLE_DIGITS)
        return (sum(s.encode()) - 48 * len(s)) % 10 == 0
    total = sum(map(int, digits[-1::-2]))
    total += sum(_DOUBLED[int(d)] for d in digits[-2::-2])
    return total % 10 == 0


# (IIN prefix range low, high, prefix length, allowed lengths, brand). Ranges from the
# brands' published IIN tables; 2-series Mastercard (2221-2720) and Mir (2200-2204) included.
_BRANDS: tuple[tuple[int, int, int, frozenset[int], str], ...] = (
    (4, 4, 1, frozenset({13, 16, 19}), "visa"),
    (51, 55, 2, frozenset({16}), "mastercard"),
    (2221, 2720, 4, frozenset({16}), "mastercard"),
    (34, 34, 2, frozenset({15}), "amex"),
    (37, 37, 2, frozenset({15}), "amex"),
    (6011, 6011, 4, frozenset(range(16, 20)), "discover"),
    (644, 649, 3, frozenset(range(16, 20)), "discover"),
    (65, 65, 2, frozenset(range(16, 20)), "discover"),
    (300, 305, 3, frozenset(range(14, 20)), "diners"),
    (3095, 3095, 4, frozenset(range(14, 20)), "diners"),
    (36, 36, 2, frozenset(range(14, 20)), "diners"),
    (38, 39, 2, frozenset(range(14, 20)), "diners"),
    # JCB's registered range is 3528-3589, but test-card generators (Faker among them) use
    # all of 35xx, and a Luhn-valid 16-19 digit number there is a card far more often than not.
    (3500, 3599, 4, frozenset(range(16, 20)), "jcb"),
    # JCB's older 15-digit cards (IIN 1800 and 2131), which generators still issue.
    (1800, 1800, 4, frozenset({15}), "jcb"),
    (2131, 2131, 4, frozenset({15}), "jcb"),
    (62, 62, 2, frozenset(range(16, 20)), "unionpay"),
    (2200, 2204, 4, frozenset(range(16, 20)), "mir"),
    (50, 50, 2, frozenset(range(12, 20)), "maestro"),
    (56, 69, 2, frozenset(range(12, 20)), "maestro"),
)


#: The IIN lookup per (first four characters, length): which brand it is (`""` for none)
#: depends on nothing else. Bounded so odd inputs cannot grow it without limit.
_IIN_CACHE: dict[tuple[str, int], str] = {}
_IIN_CACHE_MAX = 1 << 16


def _iin_brand(prefix: str, n: int) -> str:
    for low, high, width, lengths, brand in _BRANDS:
        if n in lengths and low <= int(prefix[:width]) <= high:
            return brand
    return ""


def card_brand(digits: str) -> str | None:
    """The brand whose IIN range and length fit, if the number also passes Luhn."""
    key = (digits[:4], len(digits))
    brand = _IIN_CACHE.get(key)
    if brand is None:
        brand = _iin_brand(*key)
        if len(_IIN_CACHE) < _IIN_CACHE_MAX:
            _IIN_CACHE[key] = brand
    return brand if brand and luhn_ok(digits) else None


#: Numbers the SSA voided after they were printed in advertisements.
_SSN_VOIDED = frozenset({"078051120", "219099999", "457555462"})


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: area 001-899 except 666, group 01-99, serial 0001-9999."""
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_VOIDED


#: IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


#: Letters as the numbers ISO 13616 reads them as (A=10 ... Z=35).
_IBAN_DIGITS = {ord(c): str(ord(c) - 55) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def iban_ok(iban: str) -> bool:
    """Country length and the ISO 7064 mod-97 check (`iban` without spaces, upper case)."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    return int((iban[4:] + iban[:4]).translate(_IBAN_DIGITS)) % 97 == 1


def ipv4_ok(octets: list[str]) -> bool:
    """Each octet 0-255 without leading zeros (`010` reads as octal to some parsers)."""
    return all(int(o) <= 255 and (o == "0" or o[0] != "0") for o in octets)


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def github_checksum_ok(token: str) -> bool:
    """GitHub's classic tokens end in the base62 CRC32 of their 30 random characters.

    Documented in GitHub's "Behind GitHub's new authentication token formats" (2021).
    """
    body, check = token[4:-6], token[-6:]
    crc = binascii.crc32(body.encode("ascii"))
    encoded = ""
    while crc:
        crc, rem = divmod(crc, 62)
        encoded = _B62[rem] + encoded
    return encoded.rjust(6, "0") == check


def jwt_header_ok(segment: str) -> bool:
    """A JWT's first segment is base64url JSON naming its algorithm."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = msgspec.json.decode(raw)  # DecodeError is a ValueError
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header


# --- Phone numbers -------------------------------------------------------------------------

_TYPE_DESCS = (
    "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
    "voicemail", "fixed_line", "mobile",
)  # fmt: skip


class _Desc(msgspec.Struct, frozen=True):
    lengths: frozenset[int]
    pattern: re.Pattern[str]

    def fits(self, nsn: str) -> bool:
        return (not self.lengths or len(nsn) in self.lengths) and bool(self.pattern.fullmatch(nsn))


class _Plan(msgspec.Struct, frozen=True):
    """One region's numbering plan: valid iff the general and some number type match."""

    general: _Desc
    types: tuple[_Desc, ...]
    national_prefix: str | None

    def fits(self, nsn: str) -> bool:
        return self.general.fits(nsn) and any(t.fits(nsn) for t in self.types)


def _desc(desc: PhoneNumberDesc | None) -> _Desc | None:
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = frozenset(n for n in desc.possible_length if n > 0)
    return _Desc(lengths, re.compile(desc.national_number_pattern))


@functools.cache
def _plans(country_code: int) -> tuple[_Plan, ...]:
    from phonenumbers import (
        COUNTRY_CODE_TO_REGION_CODE,
        REGION_CODE_FOR_NON_GEO_ENTITY,
        PhoneMetadata,
    )

    plans = []
    for region in COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        if region == REGION_CODE_FOR_NON_GEO_ENTITY:
            meta = PhoneMetadata.metadata_for_nongeo_region(country_code)
        else:
            meta = PhoneMetadata.metadata_for_region(region)
        general = _desc(meta.general_desc) if meta is not None else None
        if meta is None or general is None:
            continue
        types = tuple(d for name in _TYPE_DESCS if (d := _desc(getattr(meta, name))) is not None)
        plans.append(_Plan(general, types, meta.national_prefix))
    return tuple(plans)


@functools.lru_cache(maxsize=4096)
def phone_ok(digits: str, country_code: int | None = None) -> bool:
    """Whether `digits` (country code first, unless `country_code` is given) is a valid number.

    A trunk prefix written after the country code (`+44 020 ...`) is tolerated, as
    `phonenumbers.parse` tolerates it. Cached: the same numbers come back every turn of a
    conversation and on every rescan of a stream's held-back tail.
    """
    if country_code is None:
        from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

        for width in (1, 2, 3):
            cc = int(digits[:width])
            if cc in COUNTRY_CODE_TO_REGION_CODE:
                country_code, digits = cc, digits[width:]
                break
        else:
            return False
    for plan in _plans(country_code):
        if plan.fits(digits):
            return True
        prefix = plan.national_prefix
        if prefix and digits.startswith(prefix) and plan.fits(digits[len(prefix) :]):
            return True
    return False


# --- National formats: a number written as at home, without its country code --------------


class _Format(msgspec.Struct, frozen=True):
    """One of a region's national formats: which numbers it applies to and how it groups."""

    leading: re.Pattern[str] | None
    pattern: re.Pattern[str]
    #: The national format leaves the trunk prefix out (`(11) 91234-5678` in Brazil,
    #: `98765 43210` for an Indian mobile).
    without_prefix: bool
    #: It puts the area code in parentheses (Brazil's `(11)`).
    parens: bool


class _National(msgspec.Struct, frozen=True):
    plan: _Plan
    prefix: str | None
    formats: tuple[_Format, ...]

    def format_of(self, nsn: str) -> tuple[_Format, re.Match[str]] | None:
        """The format libphonenumber would write `nsn` in, as `format_number` chooses it."""
        for f in self.formats:
            if f.leading is None or f.leading.match(nsn):
                m = f.pattern.fullmatch(nsn)
                if m is not None:
                    return f, m
        return None


def _format(f: NumberFormat, prefix: str | None) -> _Format:
    leading = re.compile(f.leading_digits_pattern[-1]) if f.leading_digits_pattern else None
    rule = f.national_prefix_formatting_rule
    without = not prefix or bool(f.national_prefix_optional_when_formatting)
    if prefix and not without and rule is not None:
        without = prefix not in rule.replace("\\1", "")
    return _Format(leading, re.compile(f.pattern or ""), without, "(" in (rule or ""))


@functools.cache
def _national(region: str) -> _National | None:
    from phonenumbers import PhoneMetadata

    meta = PhoneMetadata.metadata_for_region(region)
    general = _desc(meta.general_desc) if meta is not None else None
    if meta is None or general is None:
        return None
    types = tuple(d for name in _TYPE_DESCS if (d := _desc(getattr(meta, name))) is not None)
    prefix = meta.national_prefix or None
    formats = tuple(_format(f, prefix) for f in meta.number_format)
    return _National(_Plan(general, types, prefix), prefix, formats)


@functools.lru_cache(maxsize=4096)
def national_phone_ok(
    digits: str, region: str, groups: tuple[int, ...] = (), parens: bool = False
) -> bool:
    """Whether `digits`, as written in `region` without a country code, is a valid number.

    With the trunk prefix (`030 1234567`: `0` + a valid German number) wherever the region
    has one; without it only where the region writes numbers so: regions without a trunk
    prefix (ES, IT) and formats that leave it out (Brazil's `(11)` area codes, Indian
    numbers). In France `612345678` is not how anyone writes a number.

    `groups`: the sizes of the digit groups as written, `()` for a run without separators.
    Without a trunk prefix the grouping must be the region's own, which keeps out digit
    groups that merely happen to be valid somewhere (quantities, ids): in a region without
    a trunk prefix the first group must be its format's (`612 34 56 78` and `612 345 678`
    in Spain), where the format leaves the prefix out every group must be (`98765 43210`
    in India, not `9876 543210`). `parens`: the first group is in parentheses, which
    without a trunk prefix only a format that writes them has (`(11)` in Brazil; `(162)
    726-5749` is a North American number with an impossible area code, not an Indian one).
    """
    national = _national(region)
    if national is None:
        return False
    prefix = national.prefix
    if prefix and digits.startswith(prefix) and national.plan.fits(digits[len(prefix) :]):
        return True
    if not national.plan.fits(digits):
        return False
    found = national.format_of(digits)
    if found is None:
        return not prefix and not groups
    fmt, m = found
    if not fmt.without_prefix or (parens and not fmt.parens):
        return False
    if not groups:
        return True
    if not prefix:
        return groups[0] == len(m.group(1))
    return groups == tuple(map(len, m.groups()))
