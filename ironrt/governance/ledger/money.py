"""Money in the ledger: whole nano-dollars.

Holds are added and released thousands of times a minute; with floats, `held` drifts off
zero and `spent` off the sum of the traces. Integers of 1e-9 USD are exact, far finer than
any provider bills (a token of the cheapest model costs ~2.5e-8 USD), and a bound is
always rounded up so it stays a bound.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

NANOS = 1_000_000_000
_ONE = Decimal(1)


#: Below this many nano-dollars (1,000 USD) a float's product with NANOS is within 1e-3 of
#: the exact product of its decimal form (`repr`): what `_on_grid` needs to be exact.
_FAST_BELOW = 10**12


def usd_to_nanos(value: Decimal | float, *, up: bool = False) -> int:
    """USD as nano-dollars; `up` rounds a bound upwards so it stays a bound."""
    if not up and type(value) is float:
        on_grid = _on_grid(value)
        if on_grid is not None:
            return on_grid
    d = value if isinstance(value, Decimal) else Decimal(repr(value))
    return int((d * NANOS).quantize(_ONE, rounding=ROUND_CEILING if up else ROUND_HALF_UP))


def _on_grid(value: float) -> int | None:
    """A cost that is whole nano-dollars already (what charging sets: a price quantized to
    1e-9), without Decimal: the float's product is within 1e-3 of an integer, so the
    exact decimal product is within 0.5 of it, and rounding half up gives that integer.
    None when it is not (or too large to be sure): the Decimal path decides."""
    scaled = value * NANOS
    try:
        whole = round(scaled)
    except (OverflowError, ValueError):  # inf, nan: the Decimal path says what is wrong
        return None
    if -_FAST_BELOW < whole < _FAST_BELOW and abs(scaled - whole) < 1e-3:
        return whole
    return None


def nanos_to_usd(nanos: int) -> float:
    return nanos / NANOS


def fmt_usd(value: float) -> str:
    """Dollars with enough digits to be true: never "$0.00" for a non-zero amount."""
    if value == 0:
        return "$0"
    magnitude = abs(value)
    digits = 2 if magnitude >= 1 else min(9, max(2, 3 - math.floor(math.log10(magnitude))))
    text = f"{magnitude:,.{digits}f}"
    if "." in text and digits > 2:
        text = text.rstrip("0")
        if len(text.split(".")[1]) < 2:
            text += "0" * (2 - len(text.split(".")[1]))
    return ("-$" if value < 0 else "$") + text
