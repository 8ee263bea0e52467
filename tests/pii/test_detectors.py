"""Detectors: each type is found in running text, and look-alikes are not."""

from __future__ import annotations

import phonenumbers
import pytest
from faker import Faker

from ironrt.pii import find_pii
from ironrt.pii.validators import card_brand, iban_ok, luhn_ok, phone_ok, ssn_ok

RSA_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi1QS8HdbK5hKCbO4b8gm1bKQZ9\n"
    "q2lqb3ZiE5lEo5/Lr3fXg0u8m5mJ0Zq8sH4LwK0yH6c9l0fX1e2f3g4h5i6j7k8l\n"
    "-----END RSA PRIVATE KEY-----"
)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9l"
    "IiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, f.value) for f in find_pii(text)]


def only(text: str, type_: str, value: str) -> None:
    assert found(text) == [(type_, value)]


@pytest.mark.parametrize(
    "value",
    ["jane.doe@example.com", "j.o-e+tag@mail.example.co.uk", "x_1%y@sub-domain.io", "A@B.ORG"],
)
def test_email(value: str) -> None:
    only(f"Write to {value}, please.", "EMAIL", value)


@pytest.mark.parametrize(
    "text",
    ["root@localhost", "ping @handle now", "icon@2x.png", "npm i pkg@1.2.3", "a@b.c", "x..y@z.com"],
)
def test_email_near_misses(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "value",
    [
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "+1 415 555 2671",
        "1-415-555-2671",
        "001-415-555-2671",
        "+14155552671",
        "(415) 555-2671 ext. 12",
        "415-555-2671x123",
    ],
)
def test_phone_us_formats(value: str) -> None:
    only(f"Call {value} today.", "PHONE", value)


@pytest.mark.parametrize(
    "value",
    [
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+49 30 901820",
        "+33 1 42 68 53 00",
        "+81 3-1234-5678",
        "+91 98765 43210",
        "0044 20 7946 0958",
    ],
)
def test_phone_international_formats(value: str) -> None:
    only(f"Call {value} today.", "PHONE", value)


def test_bare_ten_digits_are_a_phone_after_a_phone_word() -> None:
    assert found("please call 4155552671 now") == [("PHONE", "4155552671")]


def test_phone_drops_a_trailing_group_that_is_not_part_of_the_number() -> None:
    assert found("call +44 20 7946 0958 2023 edition") == [("PHONE", "+44 20 7946 0958")]


@pytest.mark.parametrize(
    "text",
    [
        "(123) 456-7890",  # area codes never start with 1
        "call 555-1234",
        "id 4155552671",  # bare digits read as order numbers
        "+1 123 456 7890",
        "on 2023-10-14 at 12:30",
        "ISBN 978-3-16-148410-0",
    ],
)
def test_phone_near_misses(text: str) -> None:
    assert found(text) == []


def test_phone_ok_agrees_with_phonenumbers_on_generated_numbers() -> None:
    for locale in ("en_US", "de_DE", "fr_FR", "en_GB", "ja_JP", "en_IN", "pt_BR", "it_IT"):
        fake = Faker(locale)
        fake.seed_instance(7)
        for _ in range(25):
            number = phonenumbers.parse(fake.phone_number(), locale[-2:])
            digits = f"{number.country_code}{number.national_number}"
            reference = phonenumbers.is_valid_number(phonenumbers.parse("+" + digits))
            assert phone_ok(digits) == reference, digits


@pytest.mark.parametrize(
    ("value", "brand"),
    [
        ("4111111111111111", "visa"),
        ("4111 1111 1111 1111", "visa"),
        ("4111-1111-1111-1111", "visa"),
        ("4222222222222", "visa"),
        ("5555555555554444", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("2720 9999 9999 9996", "mastercard"),
        ("378282246310005", "amex"),
        ("3782 822463 10005", "amex"),
        ("6011111111111117", "discover"),
        ("3530111333300000", "jcb"),
        ("30569309025904", "diners"),
        ("6200000000000005", "unionpay"),
        ("4000000000000000006", "visa"),
    ],
)
def test_card(value: str, brand: str) -> None:
    (f,) = find_pii(f"card: {value}.")
    assert (f.type, f.value, f.kind) == ("CARD", value, brand)


def test_card_followed_by_its_cvv() -> None:
    assert found("4111 1111 1111 1111 123") == [("CARD", "4111 1111 1111 1111")]


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # Luhn fails
        "4111 1111 1111 1112",
        "1234567812345670",  # passes Luhn, no brand starts with 1
        "9783161484100",  # ISBN-13
        "ts 1697040000000000",
        "ORD-2023-884412",
        "123e4567-e89b-12d3-a456-426614174000",
        "41111111111111111111",  # 20 digits
        "x4111111111111111",
    ],
)
def test_card_near_misses(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize("value", ["536-22-1234", "536 22 1234", "001-01-0001", "899-99-9999"])
def test_ssn(value: str) -> None:
    only(f"SSN {value}.", "SSN", value)


@pytest.mark.parametrize(
    "value",
    ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000", "078-05-1120"],
)
def test_ssn_invalid_ranges(value: str) -> None:
    assert found(f"SSN {value}.") == []


@pytest.mark.parametrize("text", ["123-45-67890", "1123-45-6789", "123-45 6789", "2023-10-14"])
def test_ssn_near_misses(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "value",
    [
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "CH9300762011623852957",
    ],
)
def test_iban(value: str) -> None:
    only(f"IBAN {value}.", "IBAN", value)


@pytest.mark.parametrize(
    "text",
    [
        "DE89370400440532013001",  # mod-97 fails
        "DE8937040044053201300",  # one digit short for Germany
        "XX89370400440532013000",  # no such country
        "GB82WEST12345698765432abc",
    ],
)
def test_iban_near_misses(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("192.168.1.1", "ipv4"),
        ("8.8.8.8", "ipv4"),
        ("2a00:1450:4001:81a::200e", "ipv6"),
        ("fe80::1ff:fe23:4567:890a", "ipv6"),
        ("2a03:2880:f12f:0083:face:b00c:0000:25de", "ipv6"),
        ("::ffff:81.2.69.160", "ipv6"),
    ],
)
def test_ip(value: str, kind: str) -> None:
    (f,) = find_pii(f"host {value}, port 22")
    assert (f.type, f.value, f.kind) == ("IP", value, kind)


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1",
        "version 1.2.3",
        "v1.2.3.4",
        "01.02.03.04",
        "1.2.3.4.5",
        "at 12:30:45",
        "mac 00:1A:2B:3C:4D:5E",
        "std::vector",
        "pi is 3.14159",
    ],
)
def test_ip_near_misses(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("sk-proj-Ab3dEf6hIj9kLmN0pQrSt3BlbkFJuVwXyZ0123456789abcdEFGH", "openai_key"),
        ("sk-abcdefghij1234567890T3BlbkFJabcdefghij1234567890", "openai_key"),
        ("sk-ant-api03-" + "Ab1-Cd2_Ef3" * 8 + "AA", "anthropic_key"),
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key_id"),
        ("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", "github_token"),
        ("github_pat_" + "A1b2C3d4E5f6G7h8I9j0K1" + "_" + "x" * 59, "github_token"),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack_token"),
        (JWT, "jwt"),
        (RSA_KEY, "private_key"),
    ],
)
def test_secret(value: str, kind: str) -> None:
    (f,) = find_pii(f"token:\n{value}\nend")
    assert (f.type, f.value, f.kind) == ("SECRET", value, kind)


def test_private_key_without_footer_is_covered_to_the_end_of_its_body() -> None:
    truncated = RSA_KEY.split("-----END")[0].rstrip()
    assert found(truncated + "\n\n(cut off).") == [("SECRET", truncated)]


@pytest.mark.parametrize(
    "text",
    [
        "export OPENAI_API_KEY=sk-your-key-here-replace-me",
        "pip install scikit-learn sk-learn",
        "AKIA1234567890ABCDEF",  # 0, 1, 8, 9 are not base32
        "ghp_aaaaaaaaaaBBBBBBBBBB33333333333RIjZY",  # checksum fails
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----",
        "eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxIn0.c2ln",  # header has no "alg"
        "xoxb-123",
    ],
)
def test_secret_near_misses(text: str) -> None:
    assert found(text) == []


def test_in_json_text_an_escape_separates_words() -> None:
    text = '{"note": "line\\njane@x.io\\n4111111111111111"}'
    assert [f.value for f in find_pii(text, json_text=True)] == ["jane@x.io", "4111111111111111"]


def test_findings_are_in_order_and_do_not_overlap() -> None:
    text = "mail a@b.io, ip ::ffff:81.2.69.160, card 4111111111111111"
    fs = find_pii(text)
    assert [f.type for f in fs] == ["EMAIL", "IP", "CARD"]
    assert all(text[f.start : f.end] == f.value for f in fs)


def test_start_skips_findings_before_it_but_reads_context() -> None:
    text = "a@b.io 9123-45-6789 c@d.io"
    assert [f.value for f in find_pii(text, start=7)] == ["c@d.io"]


def test_luhn() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")


def test_card_brand_needs_the_brand_length() -> None:
    assert card_brand("4111111111111111") == "visa"
    assert card_brand("41111111111111") is None  # 14 digits is no Visa length


def test_ssn_rules() -> None:
    assert ssn_ok("536", "22", "1234")
    assert not ssn_ok("900", "22", "1234")


def test_iban_checksum() -> None:
    assert iban_ok("GB82WEST12345698765432")
    assert not iban_ok("GB82WEST12345698765433")


@pytest.mark.parametrize(
    ("text", "value", "brand"),
    [
        ("PAN 180059714657762", "180059714657762", "jcb"),  # JCB's 15-digit 1800 range
        ("pay 1800 894133 22228 now", "1800 894133 22228", "jcb"),
        ("card 6759 9691 4833.", "6759 9691 4833", "maestro"),  # 12-digit Maestro
        ("card 676381150561", "676381150561", "maestro"),
    ],
)
def test_short_card_formats_are_found(text: str, value: str, brand: str) -> None:
    (f,) = find_pii(text)
    assert (f.type, f.value, f.kind) == ("CARD", value, brand)


@pytest.mark.parametrize("text", ["order 123456789012", "ref 676381150562", "id 1800 894133 22229"])
def test_twelve_and_fifteen_digit_ids_failing_luhn_or_brand_are_not_cards(text: str) -> None:
    assert find_pii(text) == []
