"""Values for the independent PII corpus (`bench/pii_corpus.py`): Faker, checked from outside.

Every value is made by an independent generator (Faker's locales, libphonenumber's formats,
the card and IBAN check digits as their standards define them) and kept only when a check
written from the standard, not from ironrt's detectors, says it is what its label claims:

- phones: Faker's digits are random and often invalid for the region (en_CA: ~4% valid,
  en_US: ~40%), so a number is kept only if `phonenumbers.is_valid_number` accepts it for
  its own region, and every printed form is parsed again and must give the same number;
- SSNs: the SSA's rules (area not 000, 666 or 9xx; group not 00; serial not 0000);
- cards: Luhn; IBANs: ISO 13616 length for the country and ISO 7064 mod 97;
- IPs: `ipaddress.is_global` (and, for IPv6, global unicast 2000::/3) or a private range.

Nothing here imports ironrt.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import random
import re
import zlib
from collections.abc import Iterator

import phonenumbers as pn
from faker import Faker

#: Phone regions (the detectors' default regions) and the Faker locale that writes for each.
PHONE_LOCALES: dict[str, str] = {
    "US": "en_US", "CA": "en_CA", "GB": "en_GB", "DE": "de_DE", "FR": "fr_FR", "ES": "es_ES",
    "IT": "it_IT", "NL": "nl_NL", "IN": "en_IN", "AU": "en_AU", "JP": "ja_JP", "BR": "pt_BR",
}  # fmt: skip
LOCALES = tuple(PHONE_LOCALES.values())
#: Locales whose Faker `iban()` is for their own country, with ISO 13616's length for it.
IBAN_LOCALES: dict[str, int] = {
    "de_DE": 22, "fr_FR": 27, "es_ES": 24, "it_IT": 27, "nl_NL": 18, "en_GB": 22,
    "pt_BR": 29, "de_AT": 20, "de_CH": 21, "pl_PL": 28, "pt_PT": 25, "fi_FI": 18,
    "en_IE": 22, "no_NO": 15,
}  # fmt: skip
LANG = {loc: loc.split("_")[0] for loc in LOCALES}

# Words that would turn a bare number into a cued one (or name a type): filler never has
# them, so a "no cue" message really has none. Lorem lists hold some ("call", "phone",
# "card", "tax", "security", "telefoon", "tel", "電話").
_CUE_WORDS = re.compile(
    r"\b(?:call\w*|phone\w*|cell\w*|mobil\w*|number\w*|card\w*|tax\w*|social\w*|secur\w*|"
    r"key\w*|tel|tel[eé]\w*|fax|handy|id|ssn|iban|ip|token\w*|secret\w*|version\w*|"
    r"contact\w*|bel\w*|ligue\w*|llam\w*|chiam\w*|appel\w*)\b|電話|番号|携帯",
    re.IGNORECASE,
)


class Source:
    """The randomness of one corpus section: a `random.Random` and Faker per locale.

    Each Faker is seeded from the section's seed and its locale's name when the section
    first uses it, so what one section or locale yields does not depend on the others.
    Faker instances are shared (building one costs ~60 ms) and re-seeded per section.
    """

    _shared: dict[str, Faker] = {}

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self._seeded: set[str] = set()

    def faker(self, locale: str) -> Faker:
        fake = self._shared.get(locale)
        if fake is None:
            fake = self._shared[locale] = Faker(locale)
        if locale not in self._seeded:
            fake.seed_instance(self.seed + zlib.crc32(locale.encode()))
            self._seeded.add(locale)
        return fake

    def locale(self) -> str:
        return self.rng.choice(LOCALES)

    def sentence(self, locale: str) -> str:
        """A Faker sentence in `locale` with no cue word and no digit."""
        fake = self.faker(locale)
        for _ in range(50):
            text = fake.sentence(nb_words=self.rng.randint(4, 12))
            if not _CUE_WORDS.search(text):
                return text
        return fake.sentence(nb_words=3, ext_word_list=["lorem", "ipsum", "dolor", "amet"])

    def filler(self, locale: str, most: int = 2) -> str:
        """Zero to `most` sentences; Japanese sentences are joined without spaces."""
        joiner = "" if locale == "ja_JP" else " "
        return joiner.join(self.sentence(locale) for _ in range(self.rng.randint(0, most)))

    def when(self) -> datetime.datetime:
        """A moment in 2015-2025. Not Faker's `date_time()`: its range ends at today, so
        its dates would change from one day's run to the next."""
        start = datetime.datetime(2015, 1, 1)
        return start + datetime.timedelta(seconds=self.rng.randint(0, 10 * 365 * 86400))

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(n))


# --- phones ---------------------------------------------------------------------------------

_NATIONAL = pn.PhoneNumberFormat.NATIONAL
_INTL = pn.PhoneNumberFormat.INTERNATIONAL
_E164 = pn.PhoneNumberFormat.E164
#: Regions whose international call prefix is 00 (so "0044 20 ..." is how people write).
_IDD_00 = {"GB", "DE", "FR", "ES", "IT", "NL", "IN"}
#: Regions where an extension is commonly written after the number.
_EXT_REGIONS = {"US", "CA", "GB", "AU", "IN"}
#: Where people write the national number with dots ("415.555.2671", "01.23.45.67.89").
_DOTS = {"US", "CA", "FR"}
#: Where the area code goes in parentheses ("(020) 7946 0018", "(030) 1234567"); BR's
#: national format has them already.
_PARENS = {"US", "CA", "GB", "AU", "DE", "NL", "IN", "JP"}

#: Printed forms, in the order a region's numbers cycle through them. `bare` and `e164-digits`
#: are digit runs: a phone only with a cue word (without one they are near-misses).
PHONE_FORMS = (
    "faker", "national", "international", "e164", "national-dashes", "national-dots",
    "national-parens", "intl-dashes", "intl-trunk0", "idd00", "regional", "ext", "bare",
    "e164-digits",
)  # fmt: skip
BARE_FORMS = frozenset({"bare", "e164-digits"})


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _plain(number: pn.PhoneNumber) -> pn.PhoneNumber:
    out = pn.PhoneNumber()
    out.merge_from(number)
    out.extension = None
    return out


def phone_ok(text: str, region: str) -> bool:
    """libphonenumber's verdict on `text` read as written in `region`."""
    try:
        return pn.is_valid_number(pn.parse(text, region))
    except pn.NumberParseException:
        return False


def _same(text: str, region: str, number: pn.PhoneNumber) -> bool:
    try:
        got = pn.parse(text, region)
    except pn.NumberParseException:
        return False
    return (
        pn.is_valid_number(got)
        and got.country_code == number.country_code
        and got.national_number == number.national_number
        and got.italian_leading_zero == number.italian_leading_zero
    )


def _as_written(text: str, number: pn.PhoneNumber, region: str) -> bool:
    """Whether Faker's string is how people write this number: international with `+`, or
    the national digits (trunk prefix included), or the E.164 digits. Rejects e.g. de_DE's
    `msisdn()`, 13 digits that libphonenumber accepts but nobody dials without the 0."""
    if text.lstrip().startswith("+"):
        return True
    plain = _plain(number)
    digits = _digits(text.replace("(0)", ""))
    if number.extension:
        digits = digits[: -len(number.extension)]
    e164 = pn.format_number(plain, _E164)[1:]
    return digits in (_digits(pn.format_number(plain, _NATIONAL)), e164, "00" + e164)


def faker_phones(src: Source, region: str) -> Iterator[tuple[str, pn.PhoneNumber]]:
    """Distinct numbers Faker writes for `region`, kept only if valid there (lazily: en_CA
    needs ~27 tries a number)."""
    fake = src.faker(PHONE_LOCALES[region])
    names = ("phone_number", "msisdn", "cellphone_number")
    makers = [m for m in (getattr(fake, name, None) for name in names) if m is not None]
    seen: set[int] = set()
    for attempt in itertools.count():
        if attempt > 100_000 + 1000 * len(seen):
            raise RuntimeError(f"Faker gives no more valid numbers for {region}")
        text = makers[attempt % len(makers)]()
        try:
            number = pn.parse(text, region)
        except pn.NumberParseException:
            continue
        if (
            pn.is_valid_number(number)
            and pn.region_code_for_number(number) == region
            and number.national_number not in seen
            and _as_written(text, number, region)
        ):
            seen.add(number.national_number)
            yield text, number


def phone_form(
    src: Source, form: str, text: str, number: pn.PhoneNumber, region: str
) -> str | None:
    """`number` printed as `form` (None when the form does not apply to it), re-checked."""
    plain = _plain(number)
    nat = pn.format_number(plain, _NATIONAL)
    intl = pn.format_number(plain, _INTL)
    ngroups = re.findall(r"\d+", nat)
    cc, *igroups = re.findall(r"\d+", intl)
    trunk = _digits(nat) == "0" + pn.national_significant_number(plain)
    out: str | None
    if form == "faker":
        out = text
    elif form == "national":
        out = nat
    elif form == "international":
        out = intl
    elif form == "e164":
        out = "+" + cc + "".join(igroups)
    elif form == "national-dashes":
        out = "-".join(ngroups)
    elif form == "national-dots":
        out = ".".join(ngroups) if region in _DOTS else None
    elif form == "national-parens":
        mobile = pn.number_type(plain) == pn.PhoneNumberType.MOBILE  # no area code
        parens = region in _PARENS and len(ngroups) > 1 and len(ngroups[0]) <= 5 and not mobile
        out = f"({ngroups[0]}) " + " ".join(ngroups[1:]) if parens else None
    elif form == "intl-dashes":
        out = "+" + "-".join([cc, *igroups])
    elif form == "intl-trunk0":
        out = f"+{cc} (0)" + " ".join(igroups) if trunk else None
    elif form == "idd00":
        out = f"00{cc} " + " ".join(igroups) if region in _IDD_00 else None
    elif form == "regional":
        out = _regional(src, region, ngroups)
    elif form == "ext":
        if region not in _EXT_REGIONS:
            return None
        base = src.rng.choice([nat, intl, "-".join(ngroups)])
        mark = src.rng.choice([" ext. ", " x", " ext ", " Ext. ", ", ext. "])
        out = base + mark + src.digits(src.rng.randint(2, 4))
    elif form == "bare":
        out = _digits(nat)
    elif form == "e164-digits":
        out = cc + "".join(igroups)
    else:
        raise ValueError(form)
    if out is None or not _same(out, region, number):
        return None
    return out


def _regional(src: Source, region: str, groups: list[str]) -> str | None:
    """A local habit: Germany's slash, Japan's parentheses, North America's leading 1,
    Brazil's parenthesised area code after +55."""
    if region == "DE" and len(groups) >= 2:
        return groups[0] + "/" + "".join(groups[1:])
    if region == "JP" and len(groups) == 3:
        return f"{groups[0]}({groups[1]}){groups[2]}"
    if region in ("US", "CA") and len(groups) == 3:
        return src.rng.choice(["1-{}-{}-{}", "+1 ({}) {}-{}", "1 ({}) {}-{}"]).format(*groups)
    if region == "BR" and len(groups) >= 2:
        return f"+55 ({groups[0]}) " + "-".join(groups[1:])
    return None


# --- SSNs, cards, IBANs -------------------------------------------------------------------


def ssn_issued(area: int, group: int, serial: int) -> bool:
    return 0 < area < 900 and area != 666 and group > 0 and serial > 0


def ssn_parts(text: str) -> tuple[int, int, int]:
    digits = _digits(text)
    if len(digits) != 9:
        raise ValueError(text)
    return int(digits[:3]), int(digits[3:5]), int(digits[5:])


def ssn(src: Source) -> tuple[int, int, int]:
    """A Faker en_US SSN that the SSA's rules allow."""
    while True:
        a, g, s = (int(p) for p in src.faker("en_US").ssn().split("-"))
        if ssn_issued(a, g, s):
            return a, g, s


def ssn_never_issued(src: Source) -> tuple[int, int, int]:
    """Area 000, 666 or 9xx. For 9xx the group stays under 50, outside every ITIN range
    (50-65, 70-88, 90-92, 94-99), so the value is neither an SSN nor an ITIN."""
    rng = src.rng
    area = rng.choice([0, 666, rng.randint(900, 999)])
    return area, rng.randint(1, 49), rng.randint(1, 9999)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


#: Faker's card providers ("visa" and "jcb" are aliases of visa16 and jcb16).
CARD_TYPES = (
    "visa16", "visa13", "visa19", "mastercard", "amex", "discover", "diners", "jcb16",
    "jcb15", "maestro",
)  # fmt: skip
_GROUPS = {12: (4, 4, 4), 13: (4, 4, 5), 14: (4, 6, 4), 16: (4, 4, 4, 4), 19: (4, 4, 4, 4, 3)}


def card(src: Source, brand: str) -> str:
    number: str = src.faker("en_US").credit_card_number(brand)
    if not luhn_ok(number):  # Faker computes the check digit; this is the outside check
        raise AssertionError(f"Faker made a Luhn-failing {brand}: {number}")
    return number


def card_grouped(number: str, sep: str) -> str:
    """Grouped as printed on the card: 4-4-4-4, 4-6-5 (15 digits: Amex, old JCB), 4-6-4."""
    sizes = (4, 6, 5) if len(number) == 15 else _GROUPS[len(number)]
    parts, at = [], 0
    for size in sizes:
        parts.append(number[at : at + size])
        at += size
    return sep.join(parts)


def luhn_broken(src: Source) -> str:
    """A 16-digit number with a card's prefix whose check digit is wrong."""
    number = card(src, src.rng.choice(["visa16", "mastercard", "discover", "jcb16"]))
    wrong = [d for d in "0123456789" if d != number[-1]]
    return number[:-1] + src.rng.choice(wrong)


def iban_ok(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if len(compact) != IBAN_LOCALES_BY_COUNTRY.get(compact[:2], -1):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


IBAN_LOCALES_BY_COUNTRY = {loc[-2:]: n for loc, n in IBAN_LOCALES.items()}


def iban(src: Source, locale: str) -> str:
    value: str = src.faker(locale).iban()
    if not iban_ok(value):
        raise AssertionError(f"Faker made an invalid IBAN for {locale}: {value}")
    return value


def iban_broken(src: Source, locale: str) -> str:
    """A Faker IBAN with one digit of its account part changed: mod 97 catches every single
    substitution, so the result never validates (checked anyway)."""
    value = iban(src, locale)
    while True:
        at = src.rng.choice([i for i, ch in enumerate(value) if ch.isdigit() and i >= 4])
        wrong = src.rng.choice([d for d in "0123456789" if d != value[at]])
        broken = value[:at] + wrong + value[at + 1 :]
        if not iban_ok(broken):
            return broken


def grouped4(text: str) -> str:
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


# --- emails and IPs -----------------------------------------------------------------------


def email(src: Source, locale: str, form: str) -> str:
    """Faker's `email`, `free_email` or `company_email`; `plus` adds a tag, `subdomain` a
    mail host under the company's domain, `upper` capitals as people type them."""
    fake = src.faker(locale)
    rng = src.rng
    if form in ("email", "free_email", "company_email"):
        return str(getattr(fake, form)())
    user, domain = str(fake.company_email()).split("@")
    if form == "plus":
        user, domain = str(fake.free_email()).split("@")
        return f"{user}+{rng.choice(['news', 'shop', 'github', 'work', 'x1'])}@{domain}"
    if form == "subdomain":
        sub = rng.choice(["mail", "eu", "corp", "staff.mail", "us-east"])
        return f"{user}@{sub}.{domain}"
    if form == "upper":
        return f"{user.capitalize()}@{domain.upper()}"
    raise ValueError(form)


EMAIL_FORMS = ("email", "free_email", "company_email", "plus", "subdomain", "upper")
_V6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


def ipv4_public(src: Source) -> str:
    while True:
        text = str(src.faker("en_US").ipv4_public())
        addr = ipaddress.ip_address(text)
        if addr.is_global and not addr.is_multicast and not addr.is_reserved:
            return text


def ipv4_private(src: Source) -> str:
    return str(src.faker("en_US").ipv4_private())


def ipv6_public(src: Source) -> str:
    """A Faker IPv6 in global unicast space (2000::/3) that `ipaddress` calls global."""
    while True:
        text = str(src.faker("en_US").ipv6())
        addr = ipaddress.ip_address(text)
        if addr in _V6_GLOBAL_UNICAST and addr.is_global:
            return text
