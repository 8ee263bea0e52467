"""bench/governance.py runs to its end and exits, as `just bench` needs: it once printed
its report and then hung for ever (aiosqlite's connection thread, never closed, is not a
daemon thread)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "governance.py"


def test_the_governance_bench_reports_and_exits(tmp_path: Path) -> None:
    env = {**os.environ, "IRONRT_BENCH_RESULTS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(BENCH), "--blocks", "1", "--calls", "20"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "router / floor:" in done.stdout
    result = json.loads((tmp_path / "governance.json").read_text())
    assert result["router"]["min_us"] > 0 and result["floor"]["min_us"] > 0
