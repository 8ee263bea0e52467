"""What a detector reports: a typed span of text, never more than the text it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PII_TYPES", "Finding", "PiiType", "resolve"]

PiiType = Literal["EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "SECRET"]

#: Every type, in the order reports list them. The names double as placeholder labels.
PII_TYPES: tuple[PiiType, ...] = ("EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "SECRET")


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of PII at `text[start:end]`.

    `kind` refines the type (the card brand, `ipv4`/`ipv6`, which secret); events carry
    `type` and counts only, never `value`.
    """

    type: PiiType
    start: int
    end: int
    value: str
    kind: str = ""


def resolve(findings: list[Finding]) -> list[Finding]:
    """Keep non-overlapping findings, earliest first, the longer one on a tie.

    Overlaps are rare (an IPv4 tail inside an IPv6 address, a US number matched by both
    phone patterns) and always the same thing seen twice, so the wider match wins.
    """
    findings.sort(key=lambda f: (f.start, f.start - f.end))
    kept: list[Finding] = []
    last_end = -1
    for f in findings:
        if f.start >= last_end:
            kept.append(f)
            last_end = f.end
    return kept
