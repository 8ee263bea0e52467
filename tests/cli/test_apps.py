"""`ironrt up` / `ironrt down` with an apps file, run as a user runs them (`python -m ironrt
up FILE`) against a real offline daemon. Files and agents live in each test's tmp_path and
are named by absolute path, so the tests do not depend on the current folder.

One daemon serves the module; each test uses its own agent names.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ironrt.apps.load import read_apps, resolve_apps
from ironrt.apps.schema import EXPECTED, AgentEntry
from ironrt.protocol import Agent
from ironrt.tempdaemon import TempDaemon, wait_until
from tests.cli.test_cli import one_line_error

# An agent that says where it runs and what it got, then sleeps until stopped.
SLEEPER = """\
import os, sys, time
print("cwd=" + os.getcwd(), "X=" + str(os.environ.get("X")), "args=" + ",".join(sys.argv[1:]), flush=True)
time.sleep(600)
"""
PY = json.dumps(sys.executable)


@pytest.fixture(scope="module")
def d() -> Iterator[TempDaemon]:
    with TempDaemon() as daemon:
        yield daemon


def apps_file(folder: Path, text: str) -> Path:
    (folder / "sleeper.py").write_text(SLEEPER)
    path = folder / "ironrt.toml"
    path.write_text(text)
    return path


def up(d: TempDaemon, file: Path, *args: str, command: str = "up") -> dict[str, dict[str, Any]]:
    """Run `ironrt up FILE --json`; the outcomes by name."""
    done = d.cli(command, str(file), "--json", *args, timeout=30)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["file"] == str(file)
    return {o["name"]: o for o in report["agents"]}


def agents(d: TempDaemon, *names: str) -> dict[str, list[Agent]]:
    found: dict[str, list[Agent]] = {name: [] for name in names}
    for agent in d.rt.list_agents():
        if agent.name in found:
            found[agent.name].append(agent)
    return found


def two_entries(prefix: str, budget: str = "5", args: str = '["one"]') -> str:
    return f"""
[agents.{prefix}-a]
script = "sleeper.py"
args = {args}
env = {{ X = "from-the-file" }}
budget = {budget}

[agents.{prefix}-b]
command = [{PY}, "-c", "import time; time.sleep(600)"]
restart = "on-failure"
min_uptime = "500ms"
max_memory = "512M"
max_open_files = 256
max_cpu_seconds = 3600
"""


def test_up_twice_starts_nothing_the_second_time(d: TempDaemon, tmp_path: Path) -> None:
    file = apps_file(tmp_path, two_entries("twice"))
    first = up(d, file)
    assert [o["action"] for o in first.values()] == ["started", "started"]
    records = agents(d, "twice-a", "twice-b")
    for name, outcome in first.items():
        (agent,) = records[name]
        assert agent.id == outcome["id"] and agent.pid == outcome["pid"]
        assert agent.status.live and agent.spec_digest == outcome["spec_digest"]
        assert agent.cwd == str(tmp_path)  # default: the file's folder
    a = records["twice-a"][0]
    assert a.command[1:] == [str(tmp_path / "sleeper.py"), "one"] and a.budget_usd == 5.0
    assert records["twice-b"][0].restart == "on-failure"
    b = records["twice-b"][0]
    assert b.min_uptime_s == 0.5
    limits = (b.max_memory_bytes, b.max_open_files, b.max_cpu_seconds)
    assert limits == (512 * 1024 * 1024, 256, 3600)
    # The agent's environment: the caller's, plus the entry's `env`.
    wait_until(lambda: "X=from-the-file" in d.rt.logs(a.id), timeout=10)
    assert f"cwd={tmp_path}" in d.rt.logs(a.id)

    second = up(d, file)
    assert {n: o["action"] for n, o in second.items()} == dict.fromkeys(first, "up_to_date")
    for name, outcome in second.items():
        assert (outcome["id"], outcome["pid"]) == (first[name]["id"], first[name]["pid"])
    assert {n: [x.id for x in r] for n, r in agents(d, "twice-a", "twice-b").items()} == {
        n: [o["id"]] for n, o in first.items()
    }
    text = d.cli("up", str(file))
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        f"{n}: up to date ({o['id']}, pid {o['pid']})" for n, o in first.items()
    ]


def test_a_changed_entry_is_restarted_and_the_other_left_alone(
    d: TempDaemon, tmp_path: Path
) -> None:
    file = apps_file(tmp_path, two_entries("chg"))
    before = up(d, file)
    file.write_text(two_entries("chg", budget="7.5"))
    after = up(d, file)
    a, b = after["chg-a"], after["chg-b"]
    assert a["action"] == "restarted" and a["reason"] == "spec changed"
    assert a["previous_id"] == before["chg-a"]["id"] and a["id"] != before["chg-a"]["id"]
    assert a["spec_digest"] != before["chg-a"]["spec_digest"]
    assert b["action"] == "up_to_date" and (b["id"], b["pid"]) == (
        before["chg-b"]["id"],
        before["chg-b"]["pid"],
    )
    records = agents(d, "chg-a")["chg-a"]
    assert [r.id for r in records] == [a["id"]]  # the old record is gone: one agent per name
    assert records[0].budget_usd == 7.5 and records[0].spec_digest == a["spec_digest"]
    assert records[0].status.live

    # A changed argument is a changed spec too.
    file.write_text(two_entries("chg", budget="7.5", args='["two"]'))
    again = up(d, file)
    assert again["chg-a"]["action"] == "restarted" and again["chg-b"]["action"] == "up_to_date"
    (agent,) = agents(d, "chg-a")["chg-a"]
    assert agent.command[-1] == "two"


def test_down_stops_only_them_and_up_starts_them_again(d: TempDaemon, tmp_path: Path) -> None:
    file = apps_file(tmp_path, two_entries("dn"))
    bystander = d.rt.start_agent(str(tmp_path / "sleeper.py"), name="dn-bystander")
    started = up(d, file)

    stopped = up(d, file, command="down")
    assert {n: o["action"] for n, o in stopped.items()} == dict.fromkeys(started, "stopped")
    for name, records in agents(d, "dn-a", "dn-b").items():
        assert [(r.id, r.status.value) for r in records] == [(started[name]["id"], "stopped")]
    assert d.rt.get_agent(bystander).status.live
    assert {o["action"] for o in up(d, file, command="down").values()} == {"not_running"}

    # Same spec: started again under the same ids, with new processes.
    again = up(d, file)
    for name, outcome in again.items():
        assert outcome["action"] == "started" and outcome["reason"] == "was stopped"
        assert outcome["id"] == started[name]["id"] and outcome["pid"] != started[name]["pid"]
        (agent,) = agents(d, name)[name]
        assert agent.status.live and agent.restarts == 1
    assert d.rt.get_agent(bystander).status.live


def test_an_agent_that_ended_is_started_again(d: TempDaemon, tmp_path: Path) -> None:
    file = apps_file(tmp_path, f'[agents.once]\ncommand = [{PY}, "-c", "print(1)"]\n')
    first = up(d, file)["once"]
    d.rt.wait(first["id"], timeout=20)
    again = up(d, file)["once"]
    assert again["action"] == "started" and again["id"] == first["id"]
    assert again["reason"] == "was exited"
    # A changed entry replaces the ended record rather than keeping two of that name.
    file.write_text(f'[agents.once]\ncommand = [{PY}, "-c", "print(2)"]\n')
    d.rt.wait(first["id"], timeout=20)
    changed = up(d, file)["once"]
    assert changed["action"] == "started" and changed["id"] != first["id"]
    assert [a.id for a in agents(d, "once")["once"]] == [changed["id"]]


GOOD = '[agents.bad-first]\nscript = "sleeper.py"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD + '[agents.bad-typo]\nscritp = "sleeper.py"\n',
            "agents.bad-typo: unknown key `scritp` (did you mean `script`?)",
        ),
        (
            GOOD + '[agents.bad-both]\nscript = "sleeper.py"\ncommand = ["sleep", "1"]\n',
            "agents.bad-both: give `script` or `command`, not both",
        ),
        (GOOD + "[agents.bad-none]\nbudget = 1\n", "agents.bad-none: needs `script`"),
        (
            GOOD + '[agents.bad-value]\nscript = "sleeper.py"\nrestart = "sometimes"\n',
            'agents.bad-value.restart: expected "no", "on-failure" or "always", got "sometimes"',
        ),
        (
            GOOD + '[agents.bad-env]\nscript = "sleeper.py"\nenv = { PORT = 8080 }\n',
            "agents.bad-env.env.PORT: expected a string",
        ),
        (
            GOOD + '[agents.bad-key]\nscript = "sleeper.py"\nenv = { OPENAI_API_KEY = "sk-1" }\n',
            "agents.bad-key.env: cannot set OPENAI_API_KEY for an agent: it holds a provider's",
        ),
        (
            GOOD + '[agents.bad-home]\nscript = "sleeper.py"\nenv = { IRONRT_HOME = "/x" }\n',
            "agents.bad-home.env: cannot set IRONRT_HOME for an agent: it is an ironrt setting",
        ),
        (
            GOOD + '[agents.bad-missing]\nscript = "nowhere.py"\n',
            "agents.bad-missing.script: no such file:",
        ),
        (GOOD + '[agents.all]\nscript = "sleeper.py"\n', "agents.all: bad agent name:"),
        (
            GOOD + '[agents."bad/slash"]\nscript = "sleeper.py"\n',
            "agents.\"bad/slash\": bad agent name: 'bad/slash' has a '/', which a name cannot have",
        ),
        (GOOD + "[agent.bad-top]\nscript = 1\n", "unknown key `agent` (did you mean `agents`?)"),
        ("[agents.bad-toml\n", "not valid TOML"),
    ],
)
def test_a_bad_file_starts_nothing_and_names_the_key(
    d: TempDaemon, tmp_path: Path, text: str, expected: str
) -> None:
    file = apps_file(tmp_path, text)
    line = one_line_error(d.cli("up", str(file)), code=2)
    assert line.startswith(f"ironrt: {file}: ") and expected in line, line
    assert not [a for a in d.rt.list_agents() if a.name.startswith("bad-")]


def test_a_missing_file(d: TempDaemon, tmp_path: Path) -> None:
    for command in ("up", "down"):
        line = one_line_error(d.cli(command, str(tmp_path / "nope.toml")), code=2)
        assert line == f"ironrt: {tmp_path / 'nope.toml'}: no such file"
    # A folder means the ironrt.toml in it.
    line = one_line_error(d.cli("up", str(tmp_path)), code=2)
    assert line == f"ironrt: {tmp_path / 'ironrt.toml'}: no such file"


def test_dry_run_of_the_example_file_changes_nothing(d: TempDaemon) -> None:
    example = Path(__file__).resolve().parents[2] / "agents" / "ironrt.toml"
    planned = up(d, example, "--dry-run")
    assert {n: o["action"] for n, o in planned.items()} == {
        "worker": "started",
        "ticker": "started",
    }
    assert agents(d, "worker", "ticker") == {"worker": [], "ticker": []}


def test_digest_covers_the_resolved_spec_not_its_spelling(tmp_path: Path) -> None:
    assert set(EXPECTED) == {f.name for f in msgspec.structs.fields(AgentEntry)}

    def digest(extra: str, name: str = "x") -> str:
        path = apps_file(tmp_path, f'[agents.{name}]\nscript = "sleeper.py"\n{extra}')
        (app,) = resolve_apps(path, read_apps(path))
        return app.digest

    plain = digest("budget = 5")
    assert digest('budget = 5.0\nrestart = "no"\nmin_uptime = "5s"\ncwd = "."') == plain
    assert digest("budget = 5", name="y") == plain  # the name is the key, not the spec
    assert digest("budget = 6") != plain
    assert digest('budget = 5\nenv = { A = "1" }') != digest('budget = 5\nenv = { A = "2" }')
