"""What a detector reports: a typed span of text, never more than the text it came from."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Literal, cast, get_args

from ironrt.values import BUILTIN_PII_TYPES

__all__ = [
    "PII_TYPES",
    "Counts",
    "Finding",
    "PiiType",
    "count_findings",
    "count_types",
    "new_finding",
    "resolve",
]

PiiType = Literal["EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "SECRET"]

#: Every type, in the order reports list them. The names double as placeholder labels.
#: Defined once in `ironrt.values` (the control API checks selections against it).
PII_TYPES = cast(tuple[PiiType, ...], BUILTIN_PII_TYPES)
if get_args(PiiType) != PII_TYPES:  # pragma: no cover
    raise RuntimeError("PiiType must list exactly ironrt.values.BUILTIN_PII_TYPES")


@dataclass(frozen=True, slots=True, init=False)
class Finding:
    """One piece of PII at `text[start:end]`.

    `kind` refines the type (the card brand, `ipv4`/`ipv6`, which secret); events carry
    `type` and counts only, never `value`.
    """

    #: A `PiiType`, or the name of a custom entity (`ironrt/pii/entities.py`).
    type: str
    start: int
    end: int
    value: str
    kind: str = ""

    # The generated `__init__` of a frozen dataclass looks `object.__setattr__` up for every
    # field; setting the slots through their descriptors does the same in half the time,
    # which matters because a scan builds one of these per candidate.
    def __init__(self, type: str, start: int, end: int, value: str, kind: str = "") -> None:
        _set_type(self, type)
        _set_start(self, start)
        _set_end(self, end)
        _set_value(self, value)
        _set_kind(self, kind)


_Setter = Callable[[Finding, object], None]
_set_type: _Setter = Finding.__dict__["type"].__set__
_set_start: _Setter = Finding.__dict__["start"].__set__
_set_end: _Setter = Finding.__dict__["end"].__set__
_set_value: _Setter = Finding.__dict__["value"].__set__
_set_kind: _Setter = Finding.__dict__["kind"].__set__


class _Draft:
    """A `Finding` being built: the same slots without the frozen `__setattr__`, so fields are
    stored at plain attribute speed, after which it becomes the `Finding` it holds (`__class__`
    assignment, allowed between classes of the same layout). About half the cost of
    `Finding(...)`, which is a good part of what a scan spends per finding.
    """

    # In `Finding`'s order, not sorted: `__class__` assignment needs the same layout.
    __slots__ = ("type", "start", "end", "value", "kind")  # noqa: RUF023

    type: str
    start: int
    end: int
    value: str
    kind: str

    def __init__(self, type: str, start: int, end: int, value: str, kind: str = "") -> None:
        self.type = type
        self.start = start
        self.end = end
        self.value = value
        self.kind = kind
        self.__class__ = Finding  # type: ignore[assignment]


if getattr(Finding, "__slots__", None) != _Draft.__slots__:  # pragma: no cover
    raise RuntimeError("_Draft must have exactly the slots of Finding")

#: `Finding(...)` for the detectors' hot paths: the same object, built faster.
if TYPE_CHECKING:
    new_finding = Finding
else:
    new_finding = _Draft


#: Findings counted by type: (type, how many) pairs, each type once, in first-seen order.
Counts = tuple[tuple[str, int], ...]


def count_types(types: Iterable[str]) -> Counts:
    """The findings whose types are `types`, counted by type."""
    counts: dict[str, int] = {}
    for t in types:
        counts[t] = counts.get(t, 0) + 1
    return tuple(counts.items())


def count_findings(findings: Iterable[Finding]) -> Counts:
    """`findings` counted by type."""
    return count_types(map(_TYPE, findings))


_TYPE = attrgetter("type")
_START = attrgetter("start")
_END = attrgetter("end")


def resolve(findings: list[Finding]) -> list[Finding]:
    """Keep non-overlapping findings, earliest first, the longer one on a tie.

    Overlaps are rare (an IPv4 tail inside an IPv6 address, a US number matched by both
    phone patterns) and always the same thing seen twice, so the wider match wins.
    """
    # Two stable sorts with C key functions: by start, and on a tie by end descending (the
    # order `key=(start, start - end)` gives, without a Python call per finding).
    findings.sort(key=_END, reverse=True)
    findings.sort(key=_START)
    kept: list[Finding] = []
    last_end = -1
    for f in findings:
        if f.start >= last_end:
            kept.append(f)
            last_end = f.end
    return kept
