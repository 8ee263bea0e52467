"""The detectors' fast paths give what the plain code they replace gives."""

from __future__ import annotations

import dataclasses
import random

import pytest

from ironrt.pii import Finding, find_pii
from ironrt.pii.finding import new_finding, resolve
from ironrt.pii.validators import _BRANDS, _DOUBLED, card_brand, luhn_ok


def test_new_finding_is_a_frozen_finding() -> None:
    f = new_finding("CARD", 3, 22, "4111 1111 1111 1111", "visa")
    assert type(f) is Finding
    assert f == Finding("CARD", 3, 22, "4111 1111 1111 1111", "visa")
    assert hash(f) == hash(Finding("CARD", 3, 22, "4111 1111 1111 1111", "visa"))
    assert new_finding("SSN", 0, 11, "123-45-6789").kind == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.start = 0  # type: ignore[misc]
    assert dataclasses.replace(f, start=4).start == 4


def _luhn_reference(digits: str) -> bool:
    total = sum(map(int, digits[-1::-2]))
    total += sum(_DOUBLED[int(d)] for d in digits[-2::-2])
    return total % 10 == 0


def _brand_reference(digits: str) -> str | None:
    n = len(digits)
    for low, high, width, lengths, brand in _BRANDS:
        if n in lengths and low <= int(digits[:width]) <= high:
            return brand if _luhn_reference(digits) else None
    return None


def test_luhn_and_brand_match_the_reference() -> None:
    rng = random.Random(5)
    for _ in range(5000):
        digits = "".join(rng.choices("0123456789", k=rng.randint(1, 20)))
        digits = rng.choice(("4", "5", "34", "37", "6011", "35", "62", "2221", "")) + digits
        assert luhn_ok(digits) == _luhn_reference(digits), digits
        assert card_brand(digits) == _brand_reference(digits), digits
    assert luhn_ok("٣٤") == _luhn_reference("٣٤")  # non-ASCII digits take the plain path


def test_resolve_orders_by_start_then_longest() -> None:
    a = Finding("PHONE", 5, 9, "x")
    b = Finding("PHONE", 5, 12, "y")
    c = Finding("IP", 0, 3, "z")
    d = Finding("IP", 10, 14, "w")
    assert resolve([a, d, b, c]) == [c, b]


def test_offsets_after_non_ascii_text() -> None:
    text = "naïve “quote” ✓ 🙂 call (415) 555-2671, card 4111 1111 1111 1111, ip 81.2.69.160"
    got = [(f.type, text[f.start : f.end]) for f in find_pii(text)]
    assert got == [
        ("PHONE", "(415) 555-2671"),
        ("CARD", "4111 1111 1111 1111"),
        ("IP", "81.2.69.160"),
    ]
