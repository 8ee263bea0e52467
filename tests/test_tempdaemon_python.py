"""`TempDaemon(python=...)`: the daemon runs under the interpreter asked for (the
benchmarks compare CPython builds with it), and one that does not exist is said at once,
by its path, with nothing left behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil
import pytest

from ironrt.tempdaemon import TempDaemon


def test_the_daemon_runs_under_the_interpreter_asked_for(tmp_path: Path) -> None:
    # A link of its own: the daemon's command line names it, not this test's interpreter.
    link = tmp_path / "python-under-test"
    os.symlink(sys.executable, link)
    with TempDaemon(python=str(link)) as d:
        assert d.proc is not None
        assert psutil.Process(d.proc.pid).cmdline()[:3] == [str(link), "-m", "ironrt.daemon"]
        assert d.rt.health().router_url.startswith("http://")
    with TempDaemon() as d:
        assert d.proc is not None
        assert psutil.Process(d.proc.pid).cmdline()[0] == sys.executable


def test_an_interpreter_that_does_not_exist_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-python"
    d = TempDaemon(python=str(missing))
    with pytest.raises(FileNotFoundError, match="no-such-python"):
        d.__enter__()
    assert not d.home.exists()


def test_a_daemon_a_command_started_after_a_kill_is_stopped_too() -> None:
    """A test that kills its daemon, then runs a CLI command, autostarts another in the
    same home: it was left running after its home was deleted."""
    with TempDaemon(env={"IRONRT_NO_AUTOSTART": "0"}) as d:
        d.kill()
        assert d.cli("ps").returncode == 0  # autostarts a daemon of its own
        pid = d.rt.health().pid
        assert d.proc is not None and pid != d.proc.pid
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
