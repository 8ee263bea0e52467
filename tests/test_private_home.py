"""Data at rest: everything the daemon keeps is readable by its user only, whatever the
umask of whoever started it, and a home of another user is refused in one line."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ironrt.tempdaemon import TempDaemon, wait_until


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_database_wal_and_logs_are_private(tmp_path: Path) -> None:
    script = tmp_path / "chatty.py"
    script.write_text(
        "import time\nfor i in range(400):\n    print('line', i, 'x' * 40)\ntime.sleep(60)\n"
    )
    old = os.umask(0o022)  # a permissive shell: the daemon must not inherit its modes
    try:
        d = TempDaemon()
        leftover = d.home / "daemon.log"
        leftover.write_text("")  # left readable by an older version
        os.chmod(leftover, 0o644)
        with d:
            agent = d.rt.start_agent(str(script), log_max_size=1024, log_keep=2)
            logs = d.home / "logs"

            def rotated_and_done() -> bool:  # the last line written, after rotations
                names = [p.name for p in logs.glob(f"{agent}*")]
                done = "line 399" in d.rt.logs(agent, tail=1)
                return done and any(n[-1].isdigit() for n in names)

            wait_until(rotated_and_done, timeout=15)
            d.rt.usage()  # touches the database: the WAL exists
            files = [
                d.home / "ironrt.db",
                d.home / "ironrt.db-wal",
                d.home / "ironrt.db-shm",
                d.home / "daemon.log",
                *logs.iterdir(),
            ]
            assert _mode(d.home) == 0o700 and _mode(logs) == 0o700
            loose = {str(p): oct(_mode(p)) for p in files if p.is_file() and _mode(p) != 0o600}
            assert loose == {}
            assert any(p.name[-1].isdigit() for p in files)  # a rotated log was checked
    finally:
        os.umask(old)


def _daemon(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a daemon that is expected to refuse to start."""
    cmd = [sys.executable, "-m", "ironrt.daemon"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the home to another user")
def test_a_home_of_another_user_is_refused_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    os.chown(home, 65534, 65534)
    env = {**os.environ, "IRONRT_HOME": str(home), "IRONRT_ROUTER_PORT": "0"}
    done = _daemon(env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "belongs to" in lines[0] and f"chown -R root {home}" in lines[0]
    assert list(home.iterdir()) == []  # nothing was created in it

    # A file of another user inside an own home is refused the same way.
    os.chown(home, 0, 0)
    (home / "ironrt.db").write_bytes(b"")
    os.chown(home / "ironrt.db", 65534, 65534)
    done = _daemon(env)
    assert done.returncode == 2 and "ironrt.db belongs to" in done.stderr
