"""`ironrt demo`, the README's first command, run as a user runs it: the real CLI in a
process of its own, offline, its own daemon and home. It once printed "no such script"
and exited 1, because the module that finds its agents moved (nothing ran it end to end)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil


def test_the_demo_runs_three_agents_refuses_the_spender_and_cleans_up() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONRT_")}
    done = subprocess.run(
        [sys.executable, "-m", "ironrt", "demo", "--seconds", "20"],
        env={**env, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Traceback" not in done.stderr and "no such script" not in out + done.stderr
    for name in ("researcher", "writer", "spender"):
        assert re.search(rf"starting {name}\s", out), out
    # Every agent made calls and shows in the usage table, with its spend.
    table = out.split("Spend per agent", 1)[1].split("Events that mattered", 1)[0]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:] if line.strip()}
    assert set(rows) == {"researcher", "writer", "spender"}, table
    assert all(int(row[1]) > 0 for row in rows.values()), table
    # Refused calls are counted apart: only the spender's last call was refused.
    assert [int(rows[n][2]) for n in ("researcher", "writer", "spender")] == [0, 0, 1], table
    # The spender ran out of its $0.05 and was refused with the SDK's 402.
    events = out.split("Events that mattered", 1)[1]
    assert re.search(r"BudgetExhausted\s+spender", events), events
    assert "HTTP 402" in out.split("What the spender saw", 1)[1]
    # Its temporary home is gone, and nothing runs from it any more.
    found = re.search(r"in a temporary home (\S+)", out)
    assert found is not None, out
    home = Path(found.group(1))
    assert not home.exists()
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if str(home) in " ".join(proc.info["cmdline"] or []) or proc.cwd().startswith(
                str(home)
            ):
                left.append(proc.pid)
        except psutil.Error:
            continue
    assert left == []
