"""`ironrt daemon start --offline` and `daemon run --offline` (DESIGN.md: "an offline
provider built in (`--offline` / `IRONRT_OFFLINE=1`)"), through the real CLI, a real daemon
in a home with no provider key, and the real openai SDK."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironrt.tempdaemon import TempDaemon, wait_until

NO_KEYS = {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "", "IRONRT_OFFLINE": "0"}


@pytest.fixture
def home() -> Iterator[TempDaemon]:
    """A home whose environment has no key and asks for no offline provider; the CLI
    starts the daemon (and the test stops it)."""
    d = TempDaemon(env={**NO_KEYS, "IRONRT_NO_AUTOSTART": "0"})
    try:
        yield d
    finally:
        d.cli("daemon", "stop")
        d.__exit__(None, None, None)


def ok(d: TempDaemon, *args: str) -> str:
    done = d.cli(*args)
    assert done.returncode == 0, done
    return done.stdout


def test_start_offline_answers_calls_without_a_key(home: TempDaemon, tmp_path: Path) -> None:
    assert "(offline)" in ok(home, "daemon", "start", "--offline")
    assert home.rt.health().offline is True
    agent = tmp_path / "agent.py"
    agent.write_text(
        "import openai\n"
        "r = openai.OpenAI(max_retries=0).chat.completions.create(model='gpt-4o-mini',\n"
        "    messages=[{'role': 'user', 'content': 'ping'}])\n"
        "print('REPLY', r.choices[0].message.content)\n"
    )
    agent_id = ok(home, "start", str(agent)).strip()
    assert home.rt.wait(agent_id, timeout=30).exit_code == 0
    assert "REPLY This is an offline reply from ironrt" in home.rt.logs(agent_id)
    assert "already running" in ok(home, "daemon", "start", "--offline")


def test_start_offline_refuses_a_daemon_that_is_not(home: TempDaemon) -> None:
    started = ok(home, "daemon", "start")
    assert "(offline)" not in started and home.rt.health().offline is False
    done = home.cli("daemon", "start", "--offline")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "is not offline: stop it (`ironrt daemon stop`), then start it with --offline" in (
        done.stderr
    )
    assert home.rt.health().offline is False  # the running daemon is left as it was


def test_run_offline_in_the_foreground(home: TempDaemon) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ironrt", "daemon", "run", "--offline"],
        env=home.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: home.rt.ping() or proc.poll() is not None, timeout=20)
        assert proc.poll() is None, proc.communicate(timeout=5)
        assert home.rt.health().offline is True
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and b"Traceback" not in err, err


def test_offline_is_a_flag_not_a_value(home: TempDaemon) -> None:
    done = home.cli("daemon", "start", "--offline=1")
    assert done.returncode == 2 and "--offline" in done.stderr
    assert not home.rt.ping()  # nothing was started
