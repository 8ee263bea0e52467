"""`ironrt limits`, `start --project` and `--on-budget pause` from the command line, run as
a user runs them (`python -m ironrt ...`) against a real offline daemon.

One daemon serves the module; each test uses its own project names and agents, so no test
depends on another's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ironrt.cli.render import status_text, usd
from ironrt.protocol import Agent, AgentStatus, ScopeLimits
from ironrt.tempdaemon import TempDaemon, wait_until
from tests.cli.test_cli import cli, fields, ok, one_line_error, start
from tests.records import agent_fields


@pytest.fixture(scope="module")
def d() -> Iterator[TempDaemon]:
    with TempDaemon() as daemon:
        yield daemon


def scopes(d: TempDaemon) -> dict[str, dict[str, object]]:
    listed = json.loads(ok(d, "limits", "--json"))
    assert isinstance(listed, list)  # exactly GET /v1/limits' `limits`, not the envelope
    assert all(set(s) == fields(ScopeLimits) for s in listed)
    return {s["scope"]: s for s in listed}


def test_set_unset_rm_round_trip(d: TempDaemon) -> None:
    out = ok(
        d,
        "limits",
        "set",
        "project:alpha",
        "--budget",
        "5",
        "--window",
        "1h",
        "--rpm",
        "10",
        "--tpm",
        "2000",
        "--max-concurrent",
        "2",
        "--models",
        "gpt-4o*, claude-*",
        "--json",
    )
    s = json.loads(out)
    assert set(s) == fields(ScopeLimits)
    assert s["scope"] == "project:alpha"
    assert s["budget_usd"] == 5.0 and s["window"] == "1h" and s["spent_usd"] == 0.0
    assert s["rpm"] == 10 and s["tpm"] == 2000 and s["max_concurrent"] == 2
    assert s["models"] == ["gpt-4o*", "claude-*"]
    assert isinstance(s["resets_at"], str)  # a window runs from now
    assert scopes(d)["project:alpha"] == s
    assert "global" in scopes(d)

    table = ok(d, "limits")
    (row,) = [line for line in table.splitlines() if line.startswith("project:alpha")]
    assert "$5.00" in row and "1h" in row and "gpt-4o*,claude-*" in row and "0/0" in row
    assert table.splitlines()[0].split()[:4] == ["SCOPE", "BUDGET", "SPENT", "HELD"]

    # The limits not named are left as they are; CLI names and field names both work.
    s = json.loads(ok(d, "limits", "unset", "project:alpha", "window", "max-concurrent", "--json"))
    assert s["window"] is None and s["resets_at"] is None and s["max_concurrent"] is None
    assert s["budget_usd"] == 5.0 and s["rpm"] == 10 and s["models"] == ["gpt-4o*", "claude-*"]
    s = json.loads(ok(d, "limits", "unset", "project:alpha", "budget_usd", "models", "--json"))
    assert s["budget_usd"] is None and s["models"] is None and s["tpm"] == 2000

    line = ok(d, "limits", "set", "project:alpha", "--budget", "0.25", "--window", "7d").strip()
    assert line.startswith("project:alpha: budget $0.25 per 7d, rpm 10, tpm 2,000; spent $0")

    s = json.loads(ok(d, "limits", "rm", "project:alpha", "--json"))
    assert s["scope"] == "project:alpha"
    assert all(s[f] is None for f in ("budget_usd", "window", "rpm", "tpm", "max_concurrent"))
    assert s["models"] is None
    assert ok(d, "limits", "rm", "project:alpha").startswith("removed the limits of project:alpha")


def test_global_and_agent_scopes(d: TempDaemon) -> None:
    s = json.loads(ok(d, "limits", "set", "global", "--max-concurrent", "50", "--json"))
    assert s["scope"] == "global" and s["max_concurrent"] == 50
    agent_id = start(d, "--name", "lim-bot", "--env", "PERIOD_S=30", "agents/worker.py")
    try:
        # A bare agent reference (a name here) and `agent:REF` name the same scope.
        by_name = json.loads(ok(d, "limits", "set", "lim-bot", "--rpm", "7", "--json"))
        assert by_name["scope"] == f"agent:{agent_id}" and by_name["rpm"] == 7
        prefixed = json.loads(ok(d, "limits", "set", "agent:lim-bot", "--tpm", "900", "--json"))
        assert prefixed["scope"] == f"agent:{agent_id}"
        assert prefixed["rpm"] == 7 and prefixed["tpm"] == 900
        # `ironrt budget` stays the shorthand for the agent scope's budget.
        assert "$3.00" in ok(d, "budget", "lim-bot", "3")
        assert scopes(d)[f"agent:{agent_id}"]["budget_usd"] == 3.0
        assert f"agent:{agent_id} (lim-bot)" in ok(d, "limits")
    finally:
        ok(d, "stop", agent_id)
        ok(d, "limits", "rm", "global")


def test_start_with_a_project_shows_it(d: TempDaemon) -> None:
    agent_id = start(
        d, "--project", "beta", "--on-budget", "pause", "--name", "proj-hello", "agents/hello.py"
    )
    d.rt.wait(agent_id, timeout=20)
    (row,) = [a for a in json.loads(ok(d, "ps", "--all", "--json")) if a["id"] == agent_id]
    assert set(row) == fields(Agent)
    assert row["project"] == "beta" and row["on_budget"] == "pause"
    assert row["stop_reason"] is None
    table = ok(d, "ps", "--all").splitlines()
    assert "PROJECT" in table[0].split()
    (line,) = [t for t in table if t.startswith(agent_id)]
    assert line.split()[1:3] == ["proj-hello", "beta"]
    metrics = ok(d, "metrics", agent_id)
    assert any(t.split() == ["project", "beta"] for t in metrics.splitlines())


def test_stop_by_a_person_is_shown_as_such(d: TempDaemon) -> None:
    agent_id = start(d, "--env", "PERIOD_S=30", "agents/worker.py")
    ok(d, "stop", agent_id)
    (row,) = [a for a in json.loads(ok(d, "ps", "--all", "--json")) if a["id"] == agent_id]
    assert row["status"] == "stopped" and row["stop_reason"] == "user"
    (line,) = [t for t in ok(d, "ps", "--all").splitlines() if t.startswith(agent_id)]
    assert "stopped (user)" in line
    assert "stopped (user)" in ok(d, "metrics", agent_id)


def test_on_budget_pause_pauses_until_there_is_budget(d: TempDaemon) -> None:
    agent_id = start(
        d,
        "--on-budget",
        "pause",
        "--budget",
        "0.000001",
        "--env",
        "PERIOD_S=0.2",
        "agents/worker.py",
    )
    try:
        wait_until(lambda: d.rt.get_agent(agent_id).status is AgentStatus.PAUSED, timeout=20)
        (row,) = [a for a in json.loads(ok(d, "ps", "--json")) if a["id"] == agent_id]
        assert row["status"] == "paused" and row["stop_reason"] == "budget"
        (line,) = [t for t in ok(d, "ps").splitlines() if t.startswith(agent_id)]
        assert "paused (budget)" in line
        ok(d, "budget", agent_id, "5")
        wait_until(lambda: d.rt.get_agent(agent_id).status is AgentStatus.RUNNING, timeout=20)
    finally:
        ok(d, "stop", agent_id)


def test_bad_input_is_one_clear_line(d: TempDaemon) -> None:
    def usage_error(*args: str) -> str:
        return one_line_error(cli(d, *args), code=2)

    assert "'--window'" in usage_error("limits", "set", "global", "--window", "5x")
    assert "'--budget'" in usage_error("limits", "set", "global", "--budget", "-1")
    assert "'--rpm'" in usage_error("limits", "set", "global", "--rpm", "0")
    # NaN passes every min and max: refused as not finite (it was an "unexpected error").
    for args in (
        ["limits", "set", "global", "--budget", "nan"],
        ["stop", "all", "--timeout", "nan"],
    ):
        assert "'nan' is not a finite number" in usage_error(*args)
    assert "'inf' is not a finite number" in usage_error("restart", "all", "--timeout", "inf")
    assert "'--models'" in usage_error("limits", "set", "global", "--models", " , ")
    assert "nothing to set" in usage_error("limits", "set", "global")
    assert "'tokens'" in usage_error("limits", "unset", "global", "tokens")
    assert "FIELD" in usage_error("limits", "unset", "global")
    assert "'sometimes'" in usage_error("start", "--on-budget", "sometimes", "agents/hello.py")
    # Refused by the daemon: exit 1, one line.
    assert "no-such-agent" in one_line_error(cli(d, "limits", "set", "no-such-agent", "--rpm", "5"))
    assert "no-such-agent" in one_line_error(cli(d, "limits", "rm", "agent:no-such-agent"))
    one_line_error(cli(d, "limits", "set", "project:not a name!", "--rpm", "5"))
    assert "project" in one_line_error(cli(d, "start", "--project", "no/slash", "agents/hello.py"))
    # Nothing was set by any of them.
    assert not any(s.startswith("project:not") for s in scopes(d))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "$0"),
        (None, "-"),
        (4e-10, "<$0.000000001"),
        (0.000063, "$0.000063"),
        (0.5, "$0.50"),
        (1.234, "$1.23"),
        (150.5, "$150.50"),
        (150, "$150"),
        (1234567.891, "$1,234,567.89"),
    ],
)
def test_money_is_shown_true(value: float | None, shown: str) -> None:
    assert usd(value) == shown


def test_status_says_who_paused_or_stopped() -> None:
    base = agent_fields()
    paused = Agent(**{**base, "status": AgentStatus.PAUSED, "stop_reason": "budget"})
    assert status_text(paused) == ("paused (budget)", "bold yellow")
    stopped = Agent(**{**base, "status": AgentStatus.STOPPED, "stop_reason": "user"})
    assert status_text(stopped)[0] == "stopped (user)"
    crashed = Agent(**{**base, "status": AgentStatus.EXITED, "exit_code": 3})
    assert status_text(crashed) == ("exited (3)", "red")
