"""JSON text (tool-call arguments) is scanned with its escaped line breaks read as line
breaks: a private key's armor header ends at its `\\n`, as in the text the JSON holds.

Found by hypothesis (test_offload.py's stepped-vs-inline equivalence): with every escape
read as spaces, an armor header ran on to the end of the JSON, so a key swallowed the
email in the next JSON value, and where the stepped scan cut its pieces changed the
findings (two secrets stepped, a secret and an email inline).
"""

from __future__ import annotations

import json

import pytest

from ironrt.pii.detectors import blank_escape, find_pii
from ironrt.pii.finding import Finding
from ironrt.pii.steps import Pace, find_steps

ARGS = (
    "jane.doe@example.com-----BEGIN PRIVATE KEY-----\nMIIESSN: -----BEGIN RSA PRIVATE KEY"
    "-----\nMIIEpAIBAAKCAQEA3Tz2\n-----END RSA PRIVATE KEY-----"
)
TEXT = json.dumps({"text": ARGS, "more": [ARGS[::-1]]})


def spans(found: list[Finding]) -> list[tuple[str, int, int]]:
    return [(f.type, f.start, f.end) for f in found]


def test_a_key_ends_within_its_own_json_string() -> None:
    found = find_pii(TEXT, json_text=True)
    assert [f.type for f in found] == ["SECRET", "EMAIL"]
    key, email = found
    assert key.end < TEXT.index('"more"')  # not on into the next value
    assert email.start > TEXT.index('"more"')  # the reversed copy's, found on its own
    assert email.value.endswith("moc.elpmaxe@eod.enaj")


@pytest.mark.parametrize("piece", [1, 3, 7, 40, 4096])
def test_stepped_scan_finds_what_the_whole_scan_finds(piece: int) -> None:
    stepped: list[tuple[str, int, int]] = []
    at = 0
    for stretch, found in find_steps(TEXT, Pace(step_s=0, size=piece), json_text=True):
        stepped += [(f.type, at + f.start, at + f.end) for f in found]
        at += len(stretch)
    assert stepped == spans(find_pii(TEXT, json_text=True))


def test_escapes_keep_their_length() -> None:
    for escape in ("\\n", "\\r", "\\t", '\\"', "\\\\", "\\u00e9"):
        assert len(blank_escape(escape)) == len(escape)
    assert "\n" in blank_escape("\\n") and blank_escape("\\t").isspace()
