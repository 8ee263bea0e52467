"""National phone formats: read for the configured regions only, validated by their plans."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from faker import Faker
from hypothesis import given, settings
from hypothesis import strategies as st

from ironrt.pii import StreamScanner, find_pii
from ironrt.pii.rules import DEFAULT_RULES, Rules
from ironrt.pii.validators import national_phone_ok
from tests.pii.splits import splits, streamed


def phones(text: str, rules: Rules = DEFAULT_RULES) -> list[str]:
    return [f.value for f in find_pii(text, rules=rules) if f.type == "PHONE"]


#: (number as written at home, its region)
NATIONAL = [
    ("020 7946 0018", "GB"),
    ("(0161) 496 0000", "GB"),
    ("07812 345678", "GB"),
    ("030 1234 5678", "DE"),
    ("0170 1234567", "DE"),
    ("08425/347993", "DE"),
    ("07173-22637484", "DE"),
    ("(030) 1234567", "DE"),
    ("(030) 1234-567", "DE"),
    ("06 12 34 56 78", "FR"),
    ("01.42.68.53.00", "FR"),
    ("06-12345678", "NL"),
    ("020 123 4567", "NL"),
    ("02 1234 5678", "AU"),
    ("0412 345 678", "AU"),
    ("(08)-8690-7366", "AU"),
    ("03-1234-5678", "JP"),
    ("090-1234-5678", "JP"),
    ("090(3662)3404", "JP"),
    ("(11) 91234-5678", "BR"),
    ("11 3915-0008", "BR"),
    ("612 34 56 78", "ES"),
    ("612 345 678", "ES"),
    ("347 123 4567", "IT"),
    ("06 1234 5678", "IT"),
    ("098765 43210", "IN"),
    ("98765 43210", "IN"),
    ("022 2345 6789", "IN"),
]


@pytest.mark.parametrize(("value", "region"), NATIONAL)
def test_national_formats_are_found_by_default(value: str, region: str) -> None:
    assert phones(f"You can reach her on {value} after six.") == [value]


@pytest.mark.parametrize(("value", "region"), NATIONAL)
def test_a_region_is_read_only_when_configured(value: str, region: str) -> None:
    assert phones(f"number {value} here", Rules(regions=(region,))) == [value]
    assert phones(f"number {value} here", Rules(regions=("US",))) == []


def test_a_gb_number_needs_gb() -> None:
    text = "Ring 020 7946 0018 for the office."
    assert phones(text, Rules(regions=("US",))) == []
    assert phones(text, Rules(regions=("DE", "FR"))) == []
    assert phones(text, Rules(regions=("GB",))) == ["020 7946 0018"]


def test_north_american_formats_need_a_country_code_one_region() -> None:
    text = "Call (415) 555-2671 or 415.555.2671 today."
    assert phones(text) == ["(415) 555-2671", "415.555.2671"]
    assert phones(text, Rules(regions=("US",))) == ["(415) 555-2671", "415.555.2671"]
    assert phones(text, Rules(regions=("CA",))) == ["(415) 555-2671", "415.555.2671"]
    assert phones(text, Rules(regions=("GB", "DE"))) == []
    # With a country code, the number says where it is from: read whatever the regions.
    assert phones("call +1 415 555 2671", Rules(regions=("GB",))) == ["+1 415 555 2671"]


def test_a_trailing_group_that_is_not_part_of_the_number_is_dropped() -> None:
    assert phones("call 030 1234 5678 2023 edition") == ["030 1234 5678"]


@pytest.mark.parametrize(
    "text",
    [
        "on 2024 01 15",
        "on 15.01.2024",
        "on 2024-01-15 10:30",
        "at 2024-01-15 1030",
        "at 10:30:45",
        "version 1.2.3",
        "build 10.0.19045.3570",
        "price €612 345 678",
        "price $ 612 345 678",
        "612.345.678 units",
        "1 234 567 890 total",
        "ORD-2023-884412",
        "order 2023-884412",
        "order 086-9775259-2306714",  # one token: no phone number inside it
        "Order 030 1234 5678",
        "invoice no. 0170 1234567",
        "on 15/01/2024 10",
        "card 4111 1111 1111",
        "SSN 912-34-5678",  # a never-issued SSN is not a Spanish phone either
        "zip 94105-1234",
        "ISBN 0-306-40615-2",
        "ISBN 978-3-16-148410-0",
        "addr 192.168.100.100.",
        "(162) 726-5749",  # an impossible North American area code, not an Indian number
        "+1 123 456 7890",  # a bad international number does not leave a national one
        "0044 20 7946 095",
        "Reference 1234 5678 90 attached",
        "06 12 34 56",  # too short
        "12345 67890",
    ],
)
def test_national_near_misses(text: str) -> None:
    assert phones(text) == []


@pytest.mark.parametrize(
    ("digits", "region", "groups", "ok"),
    [
        ("02079460018", "GB", (3, 4, 4), True),
        ("2079460018", "GB", (2, 4, 4), False),  # GB numbers are written with their 0
        ("0612345678", "FR", (), True),
        ("612345678", "FR", (), False),
        ("612345678", "ES", (3, 2, 2, 2), True),
        ("612345678", "ES", (2, 3, 4), False),  # not how Spain groups it
        ("3471234567", "IT", (), True),
        ("9876543210", "IN", (5, 5), True),
        ("9876543210", "IN", (4, 6), False),
        ("11912345678", "BR", (2, 5, 4), True),
        ("1234567890", "IN", (4, 4, 2), False),
        ("0301234567", "XX", (), False),
    ],
)
def test_national_phone_ok(digits: str, region: str, groups: tuple[int, ...], ok: bool) -> None:
    assert national_phone_ok(digits, region, groups) is ok


LOCALES = ["de_DE", "fr_FR", "en_GB", "nl_NL", "en_AU", "ja_JP", "pt_BR", "en_IN", "it_IT"]


@pytest.mark.parametrize("locale", LOCALES)
def test_generated_national_numbers_are_found(locale: str) -> None:
    """Faker's national numbers that libphonenumber calls valid: grouped alone, bare after a cue."""
    fake = Faker(locale)
    fake.seed_instance(11)
    region = locale[-2:]
    seen = hits = 0
    for _ in range(150):
        raw = fake.phone_number()
        if raw.startswith(("+", "00")) or not phonenumbers.is_valid_number_for_region(
            phonenumbers.parse(raw, region), region
        ):
            continue
        seen += 1
        text = f"Telefon: {raw}." if re.fullmatch("[0-9]+", raw) else f"Write down {raw} now."
        hits += phones(text, Rules(regions=(region,))) == [raw]
    assert seen >= 20
    assert hits >= 0.95 * seen


# ---- streaming: national formats are held back until they are complete ---------------------


@pytest.mark.parametrize("value", ["(030) 1234-567", "03-1234-5678", "(11) 91234-5678"])
def test_the_tail_holds_a_national_number_until_it_can_end(value: str) -> None:
    for k in range(1, len(value)):
        scanner = StreamScanner()
        released, findings = scanner.feed(f"Ruf {value[:k]}")
        assert released == "Ruf " and findings == []  # nothing of the number released
        _, findings = scanner.feed(f"{value[k:]} an, danke. ")
        assert [f.value for f in findings] == [value]


GROUPS = ["0", "030", "06", "(030)", "(11)", "1234", "5678", "12", "34", "91234", "612", "98765"]
GROUPS += ["080(1170)", "08425/"]
SEPARATORS = [" ", "-", ".", "", "  ", ")", ":", "/"]
WORDS = ["phone ", "Telefon: ", "order ", "€", "version ", "2024-01-15", "+44 ", "x", "\n", "10:"]

grouped = st.lists(
    st.one_of(st.sampled_from(GROUPS), st.sampled_from(SEPARATORS), st.sampled_from(WORDS)),
    max_size=18,
).map("".join)


def grouped_split() -> st.SearchStrategy[tuple[str, list[str]]]:
    return splits(grouped, 10)


@settings(max_examples=300, deadline=None)
@given(grouped_split(), st.sampled_from([0, 0, 9]))
def test_stream_of_digit_groups_equals_the_whole_text(
    case: tuple[str, list[str]], batch: int
) -> None:
    text, pieces = case
    assert streamed(pieces, batch) == (text, find_pii(text))
