"""Context cues: a bare digit run is an SSN or a phone number only after a word saying so."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironrt.pii import find_pii
from ironrt.pii.cues import NONE, PHONE, SSN, WINDOW, cue_before
from ironrt.pii.stream import CONTEXT
from tests.pii.splits import splits, stepped, streamed


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, f.value) for f in find_pii(text)]


@pytest.mark.parametrize(
    "text",
    [
        "SSN: 123456789",
        "ssn=123456789",
        "social security number 123456789",
        "Social Security No. 123456789",
        "SSN#123456789",
        "SS# 123456789",
        '{"name": "Ann", "social_security_number": "123456789"}',
        '{"tax_id": "123456789"}',
        "my social is 123456789",
        "tax id 123456789",
        "Taxpayer ID number: 123456789",
        "her ITIN is 123456789.",
        "Her social security number is 123456789, she said.",
        "soc. sec. 123456789",
    ],
)
def test_a_bare_ssn_after_a_cue_is_an_ssn(text: str) -> None:
    assert found(text) == [("SSN", "123456789")]


@pytest.mark.parametrize("value", ["000123456", "666123456", "900123456", "123001234", "123450000"])
def test_a_cued_ssn_is_still_validated(value: str) -> None:
    assert found(f"SSN: {value}") == []


@pytest.mark.parametrize(
    "text",
    [
        "order 123456789",
        "ISBN 9783161484100",
        "ts 1700000000",
        "created at 1700000000 utc",
        "id 4155552671",
        "PO 4500012345",
        "zip 94105-1234",
        "ticket 536221234 was closed",
        "row 123456789012",
        "recall 4155552671",  # `call` inside a word is no cue
    ],
)
def test_without_a_cue_a_bare_run_is_not_a_finding(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("please call 4155552671 now", "4155552671"),
        ("Phone: 14155552671", "14155552671"),
        ("my number is 4155552671", "4155552671"),
        ("Telefon: 0301234567", "0301234567"),
        ("Handynummer 01701234567", "01701234567"),
        ("téléphone : 0612345678", "0612345678"),
        ("portable 0612345678", "0612345678"),
        ("teléfono 912345678", "912345678"),
        ("móvil 612345678", "612345678"),
        ("cellulare 3471234567", "3471234567"),
        ("telefoon 0612345678", "0612345678"),
        ("mobiel: 0612345678", "0612345678"),
        ("電話番号\uff1a0312345678", "0312345678"),
        ("celular 11912345678", "11912345678"),
        ("WhatsApp 9876543210", "9876543210"),
        ("phone no. 02079460018", "02079460018"),
        ("Tel.: 0212345678", "0212345678"),
        ("fax\n0301234567", "0301234567"),
        ('{"name": "Ann", "phone_number": "01214960700"}', "01214960700"),
        ('{"phoneNumber": "0612345678"}', "0612345678"),
        ("call me on 0275148161388", "0275148161388"),  # 13 digits: a German number
        # With its country code but no `+`: a configured region's code, then a valid number.
        ("mobile: 442079460018", "442079460018"),
        ("Tel.: 4930901820", "4930901820"),
        ("ligue para 5511912345678", "5511912345678"),
        ("call me on 819012345678", "819012345678"),
    ],
)
def test_a_bare_phone_number_after_a_cue_is_a_phone(text: str, value: str) -> None:
    assert found(text) == [("PHONE", value)]


@pytest.mark.parametrize(
    "text",
    [
        "call about order 4155552671",  # the nearer word names another number
        "phone: see invoice 0301234567",
        "call me. Reference 4155552671",  # a sentence ends between
        "call 555 then 4155552671",  # another number is nearer the cue
        "phone: 123456789",  # a cue, but no valid number in any region
        "phone " + "x " * 20 + "4155552671",  # the cue is too far back
        "SSN: 0301234567",  # an SSN cue does not make a phone number
        "phone: 536221234",  # nor a phone cue an SSN
        '{"customer_id": "4155552671"}',
    ],
)
def test_cue_near_misses(text: str) -> None:
    assert found(text) == []


def test_a_country_code_without_plus_needs_its_region() -> None:
    from ironrt.pii.rules import Rules

    assert find_pii("mobile: 442079460018", rules=Rules(regions=("US", "DE"))) == []
    assert len(find_pii("mobile: 442079460018", rules=Rules(regions=("GB",)))) == 1


def test_the_window_is_bounded() -> None:
    filler = "x" * (WINDOW - len("phone ") - 1)
    assert cue_before(f"phone {filler} 4155552671", WINDOW) == PHONE
    assert cue_before(f"phone {filler}  4155552671", WINDOW + 1) == NONE
    assert cue_before("SSN: 1", 5) == SSN
    assert WINDOW + 1 < CONTEXT  # the stream scanner keeps the window and `\b`'s character


def test_an_nanp_run_after_a_cue_needs_a_north_american_region() -> None:
    from ironrt.pii.rules import Rules

    assert find_pii("call 4155552671", rules=Rules(regions=("GB",))) == []
    assert len(find_pii("call 4155552671", rules=Rules(regions=("CA",)))) == 1


# ---- streaming: cues before the tail are read the same in any split ---------------------------

CUES = ["SSN: ", "ssn=", "SSN#", "tax id ", "social security number ", "call ", "phone no. "]
CUES += ["Telefon: ", "móvil ", "電話番号\uff1a", "my number is ", "order ", "recall ", "version "]
NUMBERS = ["123456789", "536221234", "4155552671", "0301234567", "612345678", "3471234567"]
NUMBERS += ["030 1234 5678", "03-1234-5678", "(030) 1234-567", "(11) 91234-5678", "10.0.0.1"]
NUMBERS += ["127.0.0.1", "81.2.69.160", "1.2.3.4-beta", "Chrome/120.0.0.1", "98765 43210"]
NUMBERS += ["080(1170)7308", "08425/347993", "442079460018", '"phone_number": "', 'Version("']
FILLER = [" ", "  ", ".", ", ", "\n", "is ", "x" * 30, "about ", "0", "-", "(", ")"]

cued_text = st.lists(
    st.one_of(st.sampled_from(CUES), st.sampled_from(NUMBERS), st.sampled_from(FILLER)),
    max_size=14,
).map("".join)


def cued_split() -> st.SearchStrategy[tuple[str, list[str]]]:
    return splits(cued_text, 10)


@settings(max_examples=300, deadline=None)
@given(cued_split(), st.sampled_from([0, 0, 7, 50]))
def test_stream_with_cues_equals_the_whole_text(case: tuple[str, list[str]], batch: int) -> None:
    text, pieces = case
    assert streamed(pieces, batch) == (text, find_pii(text))


@settings(max_examples=100, deadline=None)
@given(cued_text, st.lists(st.integers(1, 30), min_size=1, max_size=5))
def test_piece_scan_with_cues_equals_the_whole_text(text: str, sizes: list[int]) -> None:
    assert stepped(text, sizes) == find_pii(text)


def test_the_cued_texts_do_hold_findings_of_each_kind() -> None:
    # The strategy above is only worth running if its texts hold what it is meant to test.
    assert found("SSN: 536221234") == [("SSN", "536221234")]
    assert found("電話番号\uff1a0301234567") == [("PHONE", "0301234567")]
    assert found("version 81.2.69.160") == []
