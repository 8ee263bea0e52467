"""`wall_clock` is the datetime formula it replaced, to the character: ISO 8601 UTC with
milliseconds, rounded as datetime rounds (to microseconds, half to even, then cut)."""

from __future__ import annotations

import datetime as dt
import re

from hypothesis import given
from hypothesis import strategies as st

from ironrt.events import utcnow, wall_clock


def by_datetime(epoch_s: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_any_time_reads_as_datetime_writes_it(epoch_s: float) -> None:
    assert wall_clock(epoch_s) == by_datetime(epoch_s)


@given(
    st.integers(min_value=0, max_value=4_102_444_800),
    st.sampled_from([0.0, 0.0004999, 0.0005, 0.9994999, 0.9995, 0.9999994, 0.9999995, 0.9999996]),
)
def test_edges_of_a_millisecond_and_of_a_second(second: int, frac: float) -> None:
    assert wall_clock(second + frac) == by_datetime(second + frac)


def test_seconds_in_any_order() -> None:
    """The cached second is replaced, never mistaken for another."""
    for epoch_s in (1_700_000_000.5, 1_600_000_000.25, 1_700_000_000.75, 1_700_000_001.0):
        assert wall_clock(epoch_s) == by_datetime(epoch_s)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utcnow())
