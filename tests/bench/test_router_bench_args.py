"""bench/router.py's `--daemon-python`: an interpreter that cannot run the daemon this
checkout's code would be measured against is refused at once, with the reason, before
anything starts (a daemon that cannot import ironrt would fail minutes into the run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "router.py"


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IRONRT_BENCH_RESULTS": str(tmp_path / "results")}
    return subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-litellm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_a_missing_interpreter_is_refused_by_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-python"
    done = run_bench(tmp_path, "--daemon-python", str(missing))
    assert done.returncode == 2, done.stdout[-500:]
    assert f"--daemon-python {missing}: cannot run it" in done.stderr
    assert not (tmp_path / "results").exists()


def test_an_interpreter_without_ironrt_is_refused(tmp_path: Path) -> None:
    # This interpreter without its site-packages: a Python that has no ironrt installed.
    bare = tmp_path / "python-without-site"
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    done = run_bench(tmp_path, "--daemon-python", str(bare))
    assert done.returncode == 2, done.stdout[-500:]
    assert "it cannot import ironrt" in done.stderr


def test_a_program_that_is_no_python_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "not-python"
    fake.write_text("#!/bin/sh\necho 'not a python' >&2\nexit 3\n")
    fake.chmod(0o755)
    done = run_bench(tmp_path, "--daemon-python", str(fake))
    assert done.returncode == 2, done.stdout[-500:]
    assert "it does not run Python (not a python)" in done.stderr
