"""Streaming: any split of a text gives what the whole text gives, holding little back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ironrt.pii import (
    Placeholders,
    StreamRedactor,
    StreamRestorer,
    StreamScanner,
    find_pii,
)
from ironrt.pii.stream import SHORT_MAX
from tests.pii.splits import splits, streamed

SAMPLES = [
    "jane.doe@example.com",
    "+1 (415) 555-2671",
    "+44 20 7946 0958 ext. 12",
    "415-555-2671",
    "4111 1111 1111 1111",
    "5555555555554444",
    "536-22-1234",
    "DE89 3704 0044 0532 0130 00",
    "192.168.1.1",
    "2a00:1450::1",  # 2001:db8::/32 is documentation, never a finding
    "AKIAIOSFODNN7EXAMPLE",
    "sk-proj-Ab3dEf6hIj9kLmN0pQrSt3BlbkFJuVwXyZ0123456789",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_-x",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\nMIIE",
]
NOISE = [" ", "  ", "\n", ".", ",", "-", ":", "@", "(", ")", "+", "x", "ext", "00", "1", "9", "A"]
WORDS = ["call ", "Card", "the", "IBAN", "v1.2.3", "2023-10-14", "eyJ", "sk-", "[EMAIL_1]", "[EM"]
WORDS += ["4155552671", "35301113333000001"]
# Cues and national formats: a finding may depend on the words before it.
WORDS += ["SSN: ", "Telefon ", "version ", "123456789", "030 1234 5678", "(11) 91234-5678"]

fragments = st.lists(
    st.one_of(
        st.sampled_from(SAMPLES),
        st.sampled_from(NOISE + WORDS),
        st.text(alphabet="0123456789 -.:@()+xAZaz", max_size=6),
    ),
    max_size=16,
).map("".join)


def split() -> st.SearchStrategy[tuple[str, list[str]]]:
    return splits(fragments)


@settings(max_examples=300, deadline=None)
@given(split())
def test_redacted_stream_equals_redacted_text(case: tuple[str, list[str]]) -> None:
    text, pieces = case
    whole = Placeholders().redact(text, find_pii(text))
    redactor = StreamRedactor(Placeholders())
    assert "".join(redactor.feed(p) for p in pieces) + redactor.flush() == whole


@settings(max_examples=200, deadline=None)
@given(split(), st.sampled_from([0, 0, 5, 40]))
def test_scanner_reports_each_finding_once_at_its_offset(
    case: tuple[str, list[str]], batch: int
) -> None:
    text, pieces = case
    assert streamed(pieces, batch) == (text, find_pii(text))


@settings(max_examples=200, deadline=None)
@given(split())
def test_restored_stream_equals_restored_text(case: tuple[str, list[str]]) -> None:
    text, pieces = case
    placeholders = Placeholders()
    placeholders.redact("a@b.io c@d.io", find_pii("a@b.io c@d.io"))  # [EMAIL_1], [EMAIL_2]
    restorer = StreamRestorer(placeholders)
    streamed = "".join(restorer.feed(p) for p in pieces) + restorer.flush()
    assert streamed == placeholders.restore(text)


def test_restorer_holds_a_partial_placeholder_only() -> None:
    placeholders = Placeholders()
    placeholders.placeholder("EMAIL", "a@b.io")
    restorer = StreamRestorer(placeholders)
    assert restorer.feed("mail [EMA") == "mail "
    assert restorer.held == 4
    assert restorer.feed("IL_1] now [x") == "a@b.io now [x"
    assert restorer.held == 0


def test_restorer_escapes_values_inside_json_text() -> None:
    placeholders = Placeholders()
    placeholders.placeholder("SECRET", "line1\nline2")
    restorer = StreamRestorer(placeholders, json_escape=True)
    assert restorer.feed('{"key": "[SECRET_1]"}') == '{"key": "line1\\nline2"}'


def test_prose_is_released_as_it_arrives() -> None:
    scanner = StreamScanner()
    for word in ("The quick brown fox jumps over the lazy dog. " * 200).split(" "):
        scanner.feed(word + " ")
        assert scanner.held <= 16


def test_held_tail_is_bounded_without_a_long_secret() -> None:
    scanner = StreamScanner()
    for _ in range(500):
        scanner.feed("1 ")  # an endless run of digit groups
        assert scanner.held <= SHORT_MAX


def test_an_open_private_key_is_held_until_its_footer() -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\n" + "MIIEpAIBAAKCAQEA3Tz2\n" * 40
    scanner = StreamScanner()
    released = "".join(scanner.feed(line + "\n")[0] for line in key.splitlines())
    assert "BEGIN" not in released
    released, findings = scanner.feed("-----END RSA PRIVATE KEY-----\nthanks")
    assert [f.kind for f in findings] == ["private_key"]
