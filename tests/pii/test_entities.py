"""Custom entities from pii.toml: declared, checked, found, redacted and restored, streamed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironrt.pii import Placeholders, StreamRestorer, find_pii
from ironrt.pii.entities import EntityError, merge_entities, parse_entities
from ironrt.pii.rules import Rules
from tests.pii.splits import splits, streamed

PII_TOML = """
[entities.EMPLOYEE_ID]
pattern = 'EMP-[0-9]{6}'
cues = ["employee", "badge"]
window = 30
case_sensitive = true

[entities.ACCOUNT]
pattern = '[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{4}'
validator = "luhn"

[entities.REF]
pattern = '[A-Z]{2}[0-9]{2}[A-Z0-9]{8,20}'
validator = "mod97"

[entities.NAME]
terms = ["Jane Roe", "Project Falcon", "Acme"]
"""
ENTITIES = parse_entities(PII_TOML)
RULES = Rules(entities=ENTITIES)


def found(text: str, rules: Rules = RULES) -> list[tuple[str, str]]:
    return [(f.type, f.value) for f in find_pii(text, rules=rules)]


def test_a_pattern_with_cues_is_reported_only_after_a_cue() -> None:
    assert found("employee EMP-123456 left") == [("EMPLOYEE_ID", "EMP-123456")]
    assert found("badge no: EMP-654321") == [("EMPLOYEE_ID", "EMP-654321")]
    assert found("ticket EMP-123456 closed") == []  # no cue: an ordinary ticket id
    far = "employee " + "x" * 40 + " EMP-123456"
    assert found(far) == []  # the cue is farther than `window`
    assert found("employee emp-123456") == []  # case_sensitive


def test_validators_keep_checksum_failures_out() -> None:
    assert found("acct 4111-1111-1111-1111.") == [("CARD", "4111-1111-1111-1111")]
    rules = RULES.only(frozenset({"ACCOUNT"}))  # CARD not wanted: ACCOUNT reports it alone
    assert found("acct 4111-1111-1111-1111.", rules) == [("ACCOUNT", "4111-1111-1111-1111")]
    assert found("acct 4111-1111-1111-1112.", rules) == []  # Luhn fails
    mod97 = RULES.only(frozenset({"REF"}))
    assert found("ref GB82WEST12345698765432 ok", mod97) == [("REF", "GB82WEST12345698765432")]
    assert found("ref GB82WEST12345698765433 ok", mod97) == []


def test_deny_list_terms_are_whole_words_in_any_case_and_spacing() -> None:
    assert found("ask jane  roe about PROJECT FALCON") == [
        ("NAME", "jane  roe"),
        ("NAME", "PROJECT FALCON"),
    ]
    assert found("Acme's report") == [("NAME", "Acme")]
    assert found("Acmeville and subacme") == []


def test_placeholders_for_entities_are_issued_and_restored() -> None:
    text = "Jane Roe (employee EMP-123456) and jane@x.io"
    ph = Placeholders()
    redacted = ph.redact(text, find_pii(text, rules=RULES))
    assert redacted == "[NAME_1] (employee [EMPLOYEE_ID_1]) and [EMAIL_1]"
    assert ph.restore("hi [NAME_1], [EMPLOYEE_ID_1] noted; [NAME_2] unknown") == (
        "hi Jane Roe, EMP-123456 noted; [NAME_2] unknown"
    )
    restorer = StreamRestorer(ph)
    pieces = ["hi [EMPLOY", "EE_ID", "_1] and [NA", "ME_1]!"]
    assert "".join(restorer.feed(p) for p in pieces) + restorer.flush() == (
        "hi EMP-123456 and Jane Roe!"
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[entities.X1]\npattern = 'A[0-9]+'", "bound every repetition"),
        ("[entities.X1]\npattern = 'A?'", "empty text"),
        ("[entities.X1]\npattern = '(unclosed'", "not a valid regex"),
        ("[entities.email]\nterms = ['a']", "upper-case"),
        ("[entities.EMAIL]\nterms = ['a']", "built-in type"),
        ("[entities.X1]\ncues = ['a']", "needs `pattern`"),
        ("[entities.X1]\nterms = ['a']\ncues = ['b']", "qualify a `pattern`"),
        ("[entities.X1]\npattern = 'A[0-9]{3}'\nvalidator = 'crc'", "validator"),
        ("[entities.X1]\npatern = 'A[0-9]{3}'", "patern"),
        ("[entities.X1]\npattern = 'A[0-9]{3}'\nwindow = 500", "window"),
        ("[entity.X1]\npattern = 'A'", "entity"),
        ("[entities.X1\n", "not valid TOML"),
    ],
)
def test_a_bad_declaration_is_refused_naming_the_file_and_what_is_wrong(
    toml: str, message: str
) -> None:
    with pytest.raises(EntityError) as err:
        parse_entities(toml, "/home/me/pii.toml")
    assert "/home/me/pii.toml" in str(err.value) and message in str(err.value)


def test_an_agents_entities_add_to_the_homes_and_replace_same_names() -> None:
    home = parse_entities("[entities.NAME]\nterms = ['Jane Roe']\n[entities.CODE]\nterms=['X1']")
    own = parse_entities("[entities.NAME]\nterms = ['John Doe']")
    merged = merge_entities(home, own)
    assert [e.name for e in merged] == ["CODE", "NAME"]
    rules = Rules(entities=merged)
    assert found("Jane Roe and John Doe, X1", rules) == [("NAME", "John Doe"), ("CODE", "X1")]


def test_types_not_wanted_are_not_reported_and_do_not_shadow_others() -> None:
    text = "mail jane@x.io, Acme, 4111 1111 1111 1111"
    assert [t for t, _ in found(text, RULES.only(frozenset({"NAME"})))] == ["NAME"]
    assert [t for t, _ in found(text, RULES.only(frozenset({"EMAIL", "CARD"})))] == [
        "EMAIL",
        "CARD",
    ]


def test_entities_in_json_text_are_found_between_escapes() -> None:
    doc = json.dumps({"note": "line\nJane Roe\tEMP-1", "who": "employee EMP-123456"})
    assert [f.value for f in find_pii(doc, json_text=True, rules=RULES)] == [
        "Jane Roe",
        "EMP-123456",
    ]


SAMPLES = ["Jane Roe", "Project Falcon", "employee EMP-123456", "EMP-123456", "Acme", "jane@x.io"]
NOISE = [" ", "  ", "\n", ".", ",", "employee ", "Jane", "Roe", "Project ", "Falcon", "EMP-", "12"]
fragments = st.lists(st.one_of(st.sampled_from(SAMPLES), st.sampled_from(NOISE)), max_size=14).map(
    "".join
)


@settings(max_examples=300, deadline=None)
@given(splits(fragments, 10))
def test_any_split_of_a_stream_finds_what_the_whole_text_finds(case: tuple[str, list[str]]) -> None:
    text, pieces = case
    assert streamed(pieces, rules=RULES) == (text, find_pii(text, rules=RULES))
