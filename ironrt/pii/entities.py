"""Custom entities: what a team calls PII beyond the built-in types, declared in `pii.toml`.

    # $IRONRT_HOME/pii.toml (home-wide); an agent's own file adds to it or replaces entries
    [entities.EMPLOYEE_ID]
    pattern = 'EMP-[0-9]{6}'     # a Python regular expression, every quantifier bounded
    validator = "none"           # "luhn" | "mod97" | "none"
    cues = ["employee", "badge"] # reported only with one of these words shortly before
    window = 40                  # how far before the candidate a cue counts (1-64)

    [entities.NAME]
    terms = ["Jane Roe", "Project Falcon"]  # a deny-list: these exact terms, whole words

Each finding is replaced by `[EMPLOYEE_ID_1]`, `[NAME_1]` in redact mode and restored in the
reply, exactly as the built-in types are. A pattern must have a bounded width (at most
`MAX_WIDTH` characters): a stream is checked by holding back a tail as long as the longest
finding, so an unbounded `+` would make that tail unbounded. Both are refused with the
file, the entity and what to write instead.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from ironrt.pii.finding import PII_TYPES, Finding, new_finding
from ironrt.pii.validators import luhn_ok

__all__ = [
    "MAX_NAME",
    "MAX_WIDTH",
    "Entity",
    "EntityError",
    "find_entities",
    "load_entities",
    "merge_entities",
    "parse_entities",
]

#: Longest finding a custom pattern may produce (and longest deny-list term).
MAX_WIDTH = 256
#: Longest entity name: the placeholder `[NAME_123456]` must stay short.
MAX_NAME = 24
_NAME = re.compile(rf"[A-Z][A-Z0-9_]{{0,{MAX_NAME - 1}}}")
#: The regex parser, for a pattern's width (`re._parser` has no stubs; `sre_parse` warns).
_PARSER: Any = importlib.import_module("re._parser")
_MAX_TERMS = 10_000
_MAX_WINDOW = 64

Validator = Literal["none", "luhn", "mod97"]


class EntityError(ValueError):
    """`pii.toml` declares something the detectors cannot run: the message says what."""


class _EntitySpec(msgspec.Struct, forbid_unknown_fields=True):
    pattern: str | None = None
    validator: Validator = "none"
    cues: list[str] = []
    window: int = 40
    terms: list[str] = []
    case_sensitive: bool = False


class _PiiFile(msgspec.Struct, forbid_unknown_fields=True):
    entities: dict[str, _EntitySpec] = {}


@dataclass(frozen=True, slots=True, eq=False)
class Entity:
    """One custom entity, compiled."""

    name: str
    pattern: re.Pattern[str] | None
    terms: re.Pattern[str] | None
    validator: Validator
    cues: re.Pattern[str] | None
    window: int
    #: Longest text a finding of it can span.
    width: int


def _words(words: list[str], flags: int) -> re.Pattern[str]:
    """Whole-word alternation of literal phrases; any run of spaces in one matches 1-3."""
    alts = sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True)
    body = "|".join(r"\s{1,3}".join(map(re.escape, a.split())) for a in alts)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", flags)


def _compile(where: str, name: str, spec: _EntitySpec) -> Entity:
    if not _NAME.fullmatch(name) or name in PII_TYPES:
        raise EntityError(
            f"{where}: entity name {name!r} must be 1-{MAX_NAME} upper-case letters, digits "
            f"or _ starting with a letter, and not a built-in type ({', '.join(PII_TYPES)})"
        )
    at = f"{where}: [entities.{name}]"
    if spec.pattern is None and not spec.terms:
        raise EntityError(f"{at} needs `pattern` (a regex) or `terms` (a deny-list), or both")
    if not 1 <= spec.window <= _MAX_WINDOW:
        raise EntityError(f"{at}: `window` must be between 1 and {_MAX_WINDOW} characters")
    if len(spec.terms) > _MAX_TERMS:
        raise EntityError(f"{at}: at most {_MAX_TERMS} `terms`")
    flags = 0 if spec.case_sensitive else re.IGNORECASE
    width = 0
    pattern = None
    if spec.pattern is not None:
        try:
            pattern = re.compile(spec.pattern, flags)
            low, high = _PARSER.parse(spec.pattern, flags).getwidth()
        except re.error as exc:
            raise EntityError(f"{at}: `pattern` is not a valid regex: {exc}") from None
        if high > MAX_WIDTH:
            raise EntityError(
                f"{at}: `pattern` can match more than {MAX_WIDTH} characters; bound every "
                "repetition (`[0-9]{6,12}` rather than `[0-9]+`)"
            )
        if low < 1:
            raise EntityError(f"{at}: `pattern` can match empty text")
        width = high
    terms = None
    if spec.terms:
        for term in spec.terms:
            if not term.strip() or len(term) > MAX_WIDTH:
                raise EntityError(f"{at}: term {term[:40]!r} must be 1-{MAX_WIDTH} characters")
        terms = _words(spec.terms, flags)
        width = max(width, max(len(t) + 2 * t.count(" ") for t in spec.terms))
    if spec.cues and pattern is None:
        raise EntityError(f"{at}: `cues` qualify a `pattern`; deny-list terms need none")
    cues = _words(spec.cues, re.IGNORECASE) if spec.cues else None
    return Entity(name, pattern, terms, spec.validator, cues, spec.window, width)


def parse_entities(data: bytes | str, where: str = "pii.toml") -> tuple[Entity, ...]:
    """Compile the entities of one `pii.toml` text; `where` names it in errors."""
    try:
        raw = msgspec.toml.decode(data, type=_PiiFile)
    except msgspec.ValidationError as exc:
        raise EntityError(f"{where}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise EntityError(f"{where}: not valid TOML: {exc}") from None
    return tuple(_compile(where, name, spec) for name, spec in raw.entities.items())


def load_entities(path: Path) -> tuple[Entity, ...]:
    """The entities in `path`; none if it does not exist. Unreadable or invalid: an error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise EntityError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_entities(data, str(path))


def merge_entities(base: tuple[Entity, ...], over: tuple[Entity, ...]) -> tuple[Entity, ...]:
    """`base` with `over`'s entities added, replacing the ones of the same name."""
    names = {e.name for e in over}
    return (*(e for e in base if e.name not in names), *over)


_IBAN_DIGITS = {ord(c): str(ord(c) - 55) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def _mod97_ok(value: str) -> bool:
    """ISO 7064 MOD 97-10, as IBANs and many account numbers carry it.

    Letters count as 10-35; a value starting with two letters and two digits has them
    moved to the end first, as an IBAN does.
    """
    s = "".join(c for c in value.upper() if c.isascii() and c.isalnum())
    if len(s) < 3:
        return False
    if s[:2].isalpha() and s[2:4].isdigit():
        s = s[4:] + s[:4]
    return int(s.translate(_IBAN_DIGITS)) % 97 == 1


def _valid(entity: Entity, value: str) -> bool:
    if entity.validator == "luhn":
        digits = "".join(c for c in value if c.isascii() and c.isdigit())
        return len(digits) >= 2 and luhn_ok(digits)
    if entity.validator == "mod97":
        return _mod97_ok(value)
    return True


def find_entities(text: str, start: int, entity: Entity, out: list[Finding]) -> None:
    """Append `entity`'s findings that start at or after `start` to `out`."""
    name = entity.name
    if entity.pattern is not None:
        cues, window = entity.cues, entity.window
        for m in entity.pattern.finditer(text, start):
            s, e = m.span()
            if s == e or not _valid(entity, m.group()):
                continue
            if cues is not None and cues.search(text, max(0, s - window), s) is None:
                continue
            out.append(new_finding(name, s, e, m.group(), "pattern"))
    if entity.terms is not None:
        for m in entity.terms.finditer(text, start):
            out.append(new_finding(name, m.start(), m.end(), m.group(), "term"))
