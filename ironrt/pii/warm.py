"""Load the phone-number checks ahead of the first call that needs them.

The detectors build what they need on first use: `phonenumbers` (~40 ms of imports) and
one compiled pattern set per numbering plan (`validators._plans`, `_national`: the first
`+1` number alone compiles the plans of 25 regions). Done on the first call with PII
checks, that made the call ~200-300 ms slower than the next ones. Done at import, it
made the daemon's start that much later. So the daemon runs `warm` in a worker thread
right after its router answers: the first call finds the work done for the configured
regions (a number of another country still compiles its plan when first seen, once), and
a call that comes during the warm-up waits for the same import lock or compiles a plan
twice (`functools.cache` keeps one), never sees a half-built state.
"""

from __future__ import annotations

from ironrt.pii.detectors import find_pii
from ironrt.pii.national import regions_of
from ironrt.pii.rules import Rules
from ironrt.pii.validators import _national, _plans
from ironrt.values import DEFAULT_PII_REGIONS

__all__ = ["warm"]

#: A text with a finding of every built-in kind: one scan takes every detector's first-use
#: path (and the phone checks of the regions' own formats).
_SAMPLE = (
    "Mail jane.doe@example.com, call +1 415 555 0100 or +44 20 7946 0958 or 030 1234567, "
    "card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, SSN 123-45-6789, "
    "host 8.8.8.8, key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH."
)


def warm(regions: tuple[str, ...] = DEFAULT_PII_REGIONS) -> None:
    """Build the numbering plans of `regions` and run every detector once (CPU only)."""
    _, _, codes = regions_of(regions)
    for code in codes:
        _plans(int(code))
    for region in regions:
        _national(region)
    find_pii(_SAMPLE, rules=Rules(regions=regions))
