"""The checked-in independent PII corpus (`bench/pii_corpus.jsonl`) is well formed and is
what `bench/pii_corpus.py` writes.

The span checks are written here from the standards (Luhn, ISO 7064 mod 97, SSA rules,
libphonenumber), not imported from the generator, so a generator bug cannot hide itself.
"""

from __future__ import annotations

import ast
import importlib.metadata
import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
CORPUS = BENCH / "pii_corpus.jsonl"
GENERATOR = BENCH / "pii_corpus.py"
#: Lines regenerated per section by the seed test.
PREFIX = 25

REGIONS = ("US", "CA", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "AU", "JP", "BR")
TYPES = ("EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "SECRET")
#: Words that make a bare digit run a phone or an SSN: near-miss messages must have none.
CUE = re.compile(
    r"\b(?:call|phone|tel|mobile|cell|ssn|social security|tax id|telefon\w*|t[ée]l[ée]phone)\b"
    r"|電話",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def lines() -> list[dict[str, Any]]:
    with CORPUS.open(encoding="utf-8") as f:
        return [json.loads(raw) for raw in f]


def luhn(digits: str) -> bool:
    checksum = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        checksum += d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
    return checksum % 10 == 0


def mod97(iban: str) -> bool:
    s = iban.replace(" ", "")
    s = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97 == 1


def phone_valid(text: str, hint: str) -> bool:
    for region in sorted(REGIONS, key=lambda r: r != hint):
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(text, region)):
                return True
        except phonenumbers.NumberParseException:
            pass
    return False


def shape_ok(type_: str, value: str, family: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if type_ == "EMAIL":
        local, _, domain = value.rpartition("@")
        return bool(local) and "." in domain and " " not in value
    if type_ == "PHONE":
        return phone_valid(value, family.split("/")[1])
    if type_ == "CARD":
        return (
            12 <= len(digits) <= 19 and re.fullmatch(r"[\d -]+", value) is not None and luhn(digits)
        )
    if type_ == "IBAN":
        return re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9 ]+", value) is not None and mod97(value)
    if type_ == "SSN":
        area, group, serial = int(digits[:3]), int(digits[3:5]), int(digits[5:])
        return len(digits) == 9 and 0 < area < 900 and area != 666 and group > 0 and serial > 0
    if type_ == "IP":
        addr = ipaddress.ip_address(value)
        return not (addr.is_loopback or addr.is_unspecified or addr.is_multicast)
    if type_ == "SECRET":
        return len(value) >= 20 and ("PRIVATE KEY" in value or not re.search(r"\s", value))
    return False


def test_the_checks_reject_what_they_should() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert mod97("GB82 WEST 1234 5698 7654 32") and not mod97("GB82 WEST 1234 5698 7654 33")
    assert shape_ok("PHONE", "+44 20 7946 0018", "phone/GB/x")
    assert not shape_ok("PHONE", "123", "phone/GB/x")
    assert not shape_ok("SSN", "666-12-3456", "") and not shape_ok("SSN", "123-00-4567", "")
    assert not shape_ok("IP", "127.0.0.1", "")


def test_corpus_is_complete_and_small(lines: list[dict[str, Any]]) -> None:
    assert CORPUS.stat().st_size < 2_000_000
    assert all(set(line) == {"text", "spans", "kind", "family"} for line in lines)
    positive = [line for line in lines if line["kind"] == "positive"]
    near = [line for line in lines if line["kind"] == "near_miss"]
    assert len(positive) >= 2000 and len(near) >= 1000
    assert len(positive) + len(near) == len(lines)
    labelled = {t: sum(s[0] == t for line in positive for s in line["spans"]) for t in TYPES}
    assert min(labelled.values()) >= 200, labelled
    families = {line["family"] for line in lines}
    for region in REGIONS:  # bare digit runs: a phone with a cue, a near-miss without
        assert f"phone/{region}/bare+cue" in families
        assert f"near/phone-bare/{region}" in families
    assert {"ssn/bare/cue", "ssn/dashed/no-cue", "near/ssn-bare-no-cue"} <= families


def test_spans_lie_in_the_text_match_their_type_and_do_not_overlap(
    lines: list[dict[str, Any]],
) -> None:
    bad = []
    for line in lines:
        text, spans = line["text"], line["spans"]
        if line["kind"] == "near_miss":
            assert spans == [], line
            continue
        assert spans, line
        end = 0
        for type_, start, stop in sorted(spans, key=lambda s: s[1]):
            assert type_ in TYPES and end <= start < stop <= len(text), line
            end = stop
            value = text[start:stop]
            if value != value.strip() or not shape_ok(type_, value, line["family"]):
                bad.append((type_, value, line["family"]))
    assert bad == []


def test_near_misses_have_no_cue_word(lines: list[dict[str, Any]]) -> None:
    cued = [
        line["text"] for line in lines if line["kind"] == "near_miss" and CUE.search(line["text"])
    ]
    assert cued == []


def made_with() -> dict[str, str]:
    """The generator's `MADE_WITH`, read from its source: importing it here would import
    Faker's locales under pytest's assertion rewriting, several times slower."""
    tree = ast.parse(GENERATOR.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MADE_WITH":
            return dict(ast.literal_eval(node.value))
    raise AssertionError("no MADE_WITH in the generator")


def test_the_seed_regenerates_the_checked_in_file(lines: list[dict[str, Any]]) -> None:
    """The first lines of every section (each has its own seed: 12 phone regions, SSNs,
    cards, IBANs, emails, IPs, secrets, records, near-misses), written by the generator in
    its own process and compared with the file: the whole corpus takes ~4 s of CPU to
    generate, these 500 lines ~1.5 s. (`python bench/pii_corpus.py --check` compares all.)"""
    for package, version in made_with().items():
        if importlib.metadata.version(package) != version:
            pytest.skip(f"the corpus was made with {package} {version}")
    run = subprocess.run(
        [sys.executable, str(GENERATOR), "--prefix", str(PREFIX)],
        capture_output=True, text=True, encoding="utf-8", timeout=90, check=True,
    )  # fmt: skip
    fresh = run.stdout.splitlines()
    dumped = [json.dumps(line, ensure_ascii=False) for line in lines]
    assert len(fresh) % PREFIX == 0 and len(fresh) >= 20 * PREFIX
    for at in range(0, len(fresh), PREFIX):
        section = fresh[at : at + PREFIX]
        start = dumped.index(section[0])
        assert dumped[start : start + PREFIX] == section, json.loads(section[0])["family"]
