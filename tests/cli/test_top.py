"""`ironrt top` through the real CLI against a real daemon: it fits a 70-column terminal
(narrow columns collapse, a long name is cut), shows calls per minute and spend bars per
agent, and the last alert; a wide terminal gets every column."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from ironrt.tempdaemon import TempDaemon, wait_until
from tests.cli.test_cli import ok, start

LONG_NAME = "a-researcher-with-a-very-long-descriptive-name"


@pytest.fixture(scope="module")
def d() -> Iterator[TempDaemon]:
    with TempDaemon() as daemon:
        yield daemon


def _busy(d: TempDaemon) -> tuple[str, str]:
    """Two running agents: one with a budget it crosses (a BudgetWarning alert), one
    without a budget; both calling every 0.3 s."""
    capped = start(
        d, "--name", LONG_NAME, "--env", "PERIOD_S=0.3", "agents/worker.py", "--budget", "0.0004"
    )
    free = start(d, "--name", "free", "--env", "PERIOD_S=0.3", "agents/worker.py")

    def warned() -> bool:
        return any(True for _ in d.rt.events(agent=capped, kind="BudgetWarning", limit=1))

    wait_until(warned, timeout=30)
    wait_until(lambda: d.rt.get_metrics(free).llm_calls >= 2, timeout=30)
    return capped, free


def test_top_fits_70_columns_with_calls_per_minute_bars_and_the_last_alert(
    d: TempDaemon,
) -> None:
    capped, free = _busy(d)
    narrow = ok(d, "top", "--once", env={"COLUMNS": "70"})
    lines = narrow.rstrip("\n").splitlines()
    assert all(len(line) <= 70 for line in lines), "\n".join(lines)
    header = next(line for line in lines if "NAME" in line)
    assert "CALLS/MIN" in header and "SPEND" in header and "STATUS" in header
    # Collapsed: the id, pid, uptime and tokens columns.
    assert "PID" not in header and "UPTIME" not in header and "TOKENS" not in header
    row = next(line for line in lines if line.startswith("a-researcher"))
    assert "…" in row  # the long name is cut, not wrapped
    assert "█" in row and "%" in row  # a bar of its budget
    found = re.search(r"running\s+[\d.]+%\s+([\d,]+)\s", row)
    assert found is not None, row
    per_min = int(found.group(1).replace(",", ""))
    recent = d.rt.usage("agent", since="1m")
    (mine,) = [r for r in recent.rows if r.key == capped]
    assert 1 <= per_min <= mine.llm_calls + mine.refused_calls + 10
    free_row = next(line for line in lines if line.startswith("free"))
    assert "█" in free_row or "░" in free_row
    assert any(line.startswith("last alert:") and "BudgetWarning" in line for line in lines)
    assert any("calls/min" in line for line in lines)

    wide = ok(d, "top", "--once", env={"COLUMNS": "200"})
    header = next(line for line in wide.splitlines() if "NAME" in line)
    for column in ("ID", "PID", "UPTIME", "TOKENS", "CALLS/MIN", "SPENT / BUDGET"):
        assert column in header
    assert LONG_NAME in wide and free[:8] in wide
    ok(d, "stop", capped)
    ok(d, "stop", free)
