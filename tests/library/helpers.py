"""Helpers for library-mode tests: scenario processes and what the real CLI then shows.

Library mode's kernel is process-wide and reads `$IRONRT_HOME` once, so each scenario
(`*_scenario.py` here) runs in a process of its own, with a home of its own; it writes what
it saw to a JSON file, and the tests compare that with the records the CLI shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ironrt.tempdaemon import TempDaemon

HERE = Path(__file__).parent
#: The SDK key the scenarios' clients hold (the process's own, in library mode).
KEY = "sk-own-key-of-this-process-5f1c9a"
#: Fast retries in the scenarios' kernels: the retry tests wait for no real backoff.
_FAST_RETRIES = {"IRONRT_RETRY_BACKOFF_INITIAL_S": "0.02", "IRONRT_RETRY_BACKOFF_MAX_S": "0.05"}


class Scenario:
    """A scenario script running in its own process, on `home`."""

    def __init__(self, script: str, home: Path, out: Path) -> None:
        self.out = out
        # Autostart is left on: that library mode starts no daemon is one of the checks.
        env = {k: v for k, v in os.environ.items() if k != "IRONRT_NO_AUTOSTART"}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / script), str(out)],
            env={**env, "IRONRT_HOME": str(home), **_FAST_RETRIES},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self, timeout: float = 90) -> dict[str, Any]:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"scenario did not finish in {timeout}s: {err[-4000:]}")
        assert self.proc.returncode == 0, err[-4000:]
        found: dict[str, Any] = json.loads(self.out.read_text())
        return found

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@dataclass
class Records:
    """What `ironrt ps --all`, `ironrt usage` and `ironrt traces` show for a home."""

    agents: list[dict[str, Any]]
    usage: dict[str, dict[str, Any]]
    traces: list[dict[str, Any]]

    def agent(self, agent_id: str) -> dict[str, Any]:
        found = [a for a in self.agents if a["id"] == agent_id]
        assert len(found) == 1, f"{agent_id} listed {len(found)} times by `ironrt ps --all`"
        return found[0]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.agents if a["name"] == name]

    def traces_of(self, agent_id: str) -> list[dict[str, Any]]:
        """The agent's calls in the order they were made (`ironrt traces` lists the
        newest first)."""
        return sorted((t for t in self.traces if t["agent_id"] == agent_id), key=lambda t: t["id"])


@dataclass
class Runs:
    #: What each scenario saw (its JSON).
    sdks: dict[str, Any]
    scopes: dict[str, Any]
    #: What the CLI shows afterwards, for each scenario's home.
    quiet: Records
    busy: Records
    homes: tuple[Path, Path]
    #: Whether a daemon answered on the first home when its scenario ended (it must not:
    #: library mode needs none and starts none).
    daemon_after_sdks: bool


def records(*daemons: TempDaemon) -> list[Records]:
    """Run the three CLI commands against each daemon's home, all at once."""
    commands = {
        "ps": ("ps", "--all", "--json"),
        "usage": ("usage", "--by", "agent", "--json"),
        "traces": ("traces", "--limit", "10000", "--json"),
    }
    procs = [
        {
            key: subprocess.Popen(
                [sys.executable, "-m", "ironrt", *args],
                env=daemon.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for key, args in commands.items()
        }
        for daemon in daemons
    ]
    found = []
    for running in procs:
        shown = {}
        for key, proc in running.items():
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"ironrt {' '.join(commands[key])}: {err}"
            shown[key] = json.loads(out)
        usage = {row["key"]: row for row in shown["usage"]["rows"]}
        found.append(Records(shown["ps"], usage, shown["traces"]))
    return found


def assert_books(shown: Records, scope: dict[str, Any], calls: int, *, status: int = 200) -> None:
    """The scope's record is an ended library agent whose spend is what the scope said,
    and the sum of its `calls` traces, as `ironrt usage` also says."""
    agent = shown.agent(scope["id"])
    assert (agent["kind"], agent["status"], agent["lost"]) == ("library", "stopped", False)
    assert agent["ended_at"] and agent["pid"] and agent["error"] is None
    assert agent["spent_usd"] == pytest.approx(scope["spent"], rel=1e-9, abs=1e-12)
    traces = shown.traces_of(scope["id"])
    assert [t["status_code"] for t in traces] == [status] * calls
    assert sum(t["cost_usd"] for t in traces) == pytest.approx(scope["spent"], abs=1e-12)
    row = shown.usage[scope["id"]]
    assert row["llm_calls"] == calls
    assert row["cost_usd"] == pytest.approx(scope["spent"], abs=1e-12)
