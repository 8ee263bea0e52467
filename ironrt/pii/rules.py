"""What the detectors look for: phone regions, private addresses, the types wanted, entities.

The built-in detectors are global compiled patterns; what varies per home and per agent is
collected here, once, in a frozen `Rules` that every scan takes (`find_pii`, `StreamScanner`,
`PieceScan`, `find_steps`). It is built when settings are read or an agent starts, never
per call: a scan only reads its fields.

- `regions`: national phone formats (without a country code) are read for these regions'
  numbering plans (`IRONRT_PII_REGIONS`).
- `private_ips`: whether addresses in private ranges (10/8, 172.16/12, 192.168/16, fc00::/7,
  100.64/10, link-local) are findings. Loopback, unspecified and documentation addresses
  never are.
- `entities`: custom entities from `pii.toml` (`ironrt/pii/entities.py`).
- `types`: the types to report (None: all, built-in and custom); a type an agent does not
  act on is not reported at all, so it cannot shadow one it does.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field, replace

from ironrt.pii.entities import Entity
from ironrt.pii.finding import PII_TYPES
from ironrt.values import DEFAULT_PII_REGIONS

__all__ = ["DEFAULT_RULES", "Rules"]

_SERIALS = itertools.count(1)


@dataclass(frozen=True, slots=True, eq=False)
class Rules:
    """One configuration of the detectors; immutable, shared by every scan that uses it."""

    regions: tuple[str, ...] = DEFAULT_PII_REGIONS
    private_ips: bool = True
    entities: tuple[Entity, ...] = ()
    #: Types to report (upper case); None: every built-in type and every entity.
    types: frozenset[str] | None = None
    #: Longest custom finding plus its look-ahead: what a stream must hold back for them.
    entity_width: int = field(init=False, default=0)
    #: Tells these rules apart from every other `Rules` of the process, as identity does,
    #: in a plain int (what `recall.py` keys on: no reference the collector must follow).
    serial: int = field(init=False, default=0)
    #: `national.regions_of(regions)`, kept here at its first use (`national.region_plan`):
    #: a scan asks for it once per candidate number.
    region_plan: tuple[bool, tuple[str, ...], tuple[str, ...]] | None = field(
        init=False, default=None, repr=False
    )

    def __post_init__(self) -> None:
        width = max((e.width + 1 for e in self.entities if self.wants(e.name)), default=0)
        object.__setattr__(self, "entity_width", width)
        object.__setattr__(self, "serial", next(_SERIALS))

    def wants(self, type_: str) -> bool:
        return self.types is None or type_ in self.types

    @property
    def labels(self) -> tuple[str, ...]:
        """Every type these rules can report, built-in first."""
        return (*PII_TYPES, *(e.name for e in self.entities))

    def only(self, types: frozenset[str] | None) -> Rules:
        """The same rules reporting only `types` (cached: one per distinct set)."""
        if types == self.types:
            return self
        return _only(self, types)


@functools.lru_cache(maxsize=256)
def _only(rules: Rules, types: frozenset[str] | None) -> Rules:
    return replace(rules, types=types)


#: The rules of a scan that was not given any: every type, default regions.
DEFAULT_RULES = Rules()
