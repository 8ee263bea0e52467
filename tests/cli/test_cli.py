"""The `ironrt` command line, run as a user runs it: `python -m ironrt ...` subprocesses
against a real daemon in a temporary home (offline provider, fast restarts).

One daemon serves the whole module (starting one per test would dominate the run time);
each test makes its own agents and never depends on another test's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil
import pytest

from ironrt.protocol import EVENT_TYPES, Agent, Health, Metrics, Trace
from ironrt.tempdaemon import TempDaemon, wait_until

REPO = Path(__file__).resolve().parents[2]
ID = re.compile(r"^[0-9a-f]{12}$")


def fields(struct: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(struct)}


@pytest.fixture(scope="module")
def d() -> Iterator[TempDaemon]:
    with TempDaemon() as daemon:
        yield daemon


def cli(
    d: TempDaemon, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ironrt", *args],
        cwd=REPO,
        env={**d.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(d: TempDaemon, *args: str, **kw: object) -> str:
    done = cli(d, *args, **kw)  # type: ignore[arg-type]
    assert done.returncode == 0, f"ironrt {' '.join(args)}: {done.stderr}"
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert done.returncode == code, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ironrt: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def start(d: TempDaemon, *args: str) -> str:
    agent_id = ok(d, "start", *args).strip()
    assert ID.match(agent_id), agent_id
    return agent_id


def test_start_then_ps_json_field_by_field(d: TempDaemon) -> None:
    agent_id = start(d, "agents/hello.py", "--budget", "50")
    d.rt.wait(agent_id, timeout=20)
    listed = json.loads(ok(d, "ps", "--all", "--json"))
    (row,) = [a for a in listed if a["id"] == agent_id]
    assert set(row) == fields(Agent)
    assert row["name"] == "hello"
    assert isinstance(row["pid"], int) and row["pid"] > 0
    assert row["status"] == "exited" and row["exit_code"] == 0 and row["signal"] is None
    assert row["budget_usd"] == 50.0 and row["spent_usd"] == 0.0
    assert row["restarts"] == 0 and row["restart"] == "no"
    assert row["command"][1:] == ["agents/hello.py"] and row["cwd"] == str(REPO)
    for stamp in ("created_at", "started_at", "ended_at"):
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", row[stamp]), row[stamp]
    # Without --all, ended agents are left out.
    assert agent_id not in {a["id"] for a in json.loads(ok(d, "ps", "--json"))}
    table = ok(d, "ps", "--all")
    assert agent_id in table and "exited" in table and "$50.00" in table


def test_agent_arguments_and_logs(d: TempDaemon) -> None:
    agent_id = start(d, "agents/hello.py", "--budget", "5", "--", "--verbose", "--name", "x")
    agent = d.rt.wait(agent_id, timeout=20)
    assert agent.budget_usd == 5.0 and agent.name == "hello"
    out = ok(d, "logs", agent_id)
    assert f"hello from agent {agent_id}" in out
    assert "arguments: --verbose --name x" in out
    assert (
        ok(d, "logs", agent_id, "-n", "1").strip().startswith("the router is at http://127.0.0.1:")
    )


def test_metrics_json(d: TempDaemon) -> None:
    agent_id = start(d, "agents/hello.py", "--budget", "2")
    d.rt.wait(agent_id, timeout=20)
    m = json.loads(ok(d, "metrics", agent_id, "--json"))
    assert set(m) == fields(Metrics)
    assert m["id"] == agent_id and m["status"] == "exited" and m["exit_code"] == 0
    assert m["budget_usd"] == 2.0 and m["budget_remaining_usd"] == 2.0 and m["llm_calls"] == 0
    assert "budget" in ok(d, "metrics", agent_id)


def test_logs_follow_ends_with_the_agent(d: TempDaemon) -> None:
    agent_id = start(d, "agents/crasher.py", "0.2")
    done = cli(d, "logs", "-f", agent_id, timeout=20)
    assert done.returncode == 0, done.stderr
    assert "working..." in done.stdout and "something went wrong" in done.stdout
    assert d.rt.get_agent(agent_id).exit_code == 3


def test_stop_kills_the_tree_and_names_and_prefixes_resolve(d: TempDaemon) -> None:
    agent_id = start(d, "--name", "spawny", "agents/spawner.py")
    pid = d.rt.get_agent(agent_id).pid
    assert pid is not None
    wait_until(lambda: len(psutil.Process(pid).children(recursive=True)) == 2, timeout=15)
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    by_prefix = json.loads(ok(d, "metrics", agent_id[:7], "--json"))
    assert by_prefix["id"] == agent_id
    assert "spawny" in ok(d, "ps")
    out = ok(d, "stop", "spawny", "--timeout", "5")
    assert out.startswith(f"stopped spawny ({agent_id})")
    assert d.rt.get_agent(agent_id).status.value == "stopped"
    wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree))
    ok(d, "rm", "spawny")
    one_line_error(cli(d, "metrics", agent_id))


def test_unknown_agent_is_one_line_exit_1(d: TempDaemon) -> None:
    line = one_line_error(cli(d, "logs", "no-such-agent"))
    assert "no-such-agent" in line
    for command in ("metrics", "logs", "stop"):  # it asked for /v1/agents//metrics
        line = one_line_error(cli(d, command, ""))
        assert line == "ironrt: `ref` is empty: name an agent (its id or name)"


def test_usage_errors_exit_2(d: TempDaemon) -> None:
    assert "Missing argument" in one_line_error(cli(d, "start"), code=2)
    assert "--bogus" in one_line_error(cli(d, "ps", "--bogus"), code=2)
    assert "'maybe'" in one_line_error(cli(d, "start", "--restart", "maybe", "x.py"), code=2)
    assert "K=V" in one_line_error(cli(d, "start", "--env", "NOEQUALS", "x.py"), code=2)
    assert "no such script" in one_line_error(cli(d, "start", "missing.py"))
    # An empty value is a mistake to say, not the option left out (it started the agent).
    before = len(d.rt.list_agents())
    for option in ("--log-max-size", "--max-memory", "--max-open-files", "--max-cpu-seconds"):
        line = one_line_error(cli(d, "start", "agents/hello.py", option, ""), code=2)
        assert f"Invalid value for '{option}'" in line and "''" in line
    assert len(d.rt.list_agents()) == before


def test_no_autostart_without_a_daemon() -> None:
    with tempfile.TemporaryDirectory(prefix="irt-", dir="/tmp") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IRONRT_")}
        for args in (
            ["--no-autostart", "--home", home, "ps"],
            ["--home", home, "daemon", "status"],
        ):
            done = subprocess.run(
                [sys.executable, "-m", "ironrt", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert "no ironrt daemon is running" in one_line_error(done)
        assert not (Path(home) / "ironrt.sock").exists()


def test_daemon_status_json(d: TempDaemon) -> None:
    h = json.loads(ok(d, "daemon", "status", "--json"))
    assert set(h) == fields(Health)
    assert d.proc is not None
    assert h["ok"] is True and h["pid"] == d.proc.pid
    assert h["socket"] == str(d.home / "ironrt.sock") and h["offline"] is True
    assert h["router_url"].startswith("http://127.0.0.1:")
    assert "ironrt daemon is running" in ok(d, "daemon", "status")
    assert "already running" in ok(d, "daemon", "start")


def test_doctor_passes_on_a_healthy_daemon(d: TempDaemon) -> None:
    out = ok(d, "doctor")
    assert "✗" not in out
    assert "✓ daemon answers" in out and "✓ router reachable" in out


def test_budget_set_limits_top_and_events(d: TempDaemon) -> None:
    agent_id = start(
        d, "--name", "busy", "--env", "PERIOD_S=30", "agents/worker.py", "--budget", "1"
    )
    wait_until(lambda: d.rt.get_metrics(agent_id).llm_calls >= 1, timeout=20)
    assert "$3.00" in ok(d, "budget", "busy", "3")
    assert "pii redact" in ok(d, "set", "busy", "--pii", "redact", "--rpm", "10")
    for option, value, name in (("--rpm", "5", "rpm"), ("--budget", "9", "budget")):
        line = one_line_error(cli(d, "set", "busy", option, value, "--unset", name), code=2)
        assert f"{option} and --unset {name} contradict each other" in line
    limits = json.loads(ok(d, "limits", "--json"))
    (row,) = [s for s in limits if s["scope"] == f"agent:{agent_id}"]
    assert row["budget_usd"] == 3.0 and row["rpm"] == 10
    assert d.rt.get_agent(agent_id).pii == "redact"
    frame = ok(d, "top", "--once")
    assert "busy" in frame and "running" in frame
    events = json.loads(ok(d, "events", "--agent", "busy", "--json"))
    assert all(set(e) == fields(EVENT_TYPES[e["kind"]]) | {"kind"} for e in events)
    assert all(e["agent_name"] == "busy" for e in events)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "AgentStarted" and "AgentUpdated" in kinds
    assert "AgentStarted" in ok(d, "events", "--agent", agent_id)
    started = json.loads(ok(d, "events", "--kind", "AgentStarted,AgentUpdated", "--json"))
    assert {e["kind"] for e in started} == {"AgentStarted", "AgentUpdated"}
    line = ok(d, "events", "--agent", agent_id, "--kind", "AgentUpdated")
    assert "AgentUpdated" in line and "busy" in line and "changes=" in line
    # A filter given empty or misspelt matched nothing, or everything, without a word.
    assert "`kind` is empty" in one_line_error(cli(d, "events", "--kind", " , "))
    assert "invalid name 'a b'" in one_line_error(cli(d, "events", "--project", "a b"))
    ok(d, "stop", agent_id)
    assert "stopped after" in d.rt.logs(agent_id)  # the worker handled SIGTERM itself


def test_example_agents_call_llms_through_the_router(d: TempDaemon) -> None:
    ids = [
        start(d, f"agents/{name}", "--budget", "1")
        for name in ("openai_chat.py", "anthropic_chat.py")
    ]
    for agent_id in ids:
        agent = d.rt.wait(agent_id, timeout=30)
        assert agent.exit_code == 0, d.rt.logs(agent_id)
        assert "usage:" in ok(d, "logs", agent_id)
        traces = json.loads(ok(d, "traces", "--agent", agent_id, "--json"))
        assert all(set(t) == fields(Trace) for t in traces)
        assert sorted(t["stream"] for t in traces) == [False, True]
    usage = json.loads(ok(d, "usage", "--json"))
    rows = {r["key"]: r for r in usage["rows"]}
    assert all(rows[i]["llm_calls"] == 2 and rows[i]["cost_usd"] > 0 for i in ids)
    by_provider = ok(d, "usage", "--by", "provider")
    assert "openai" in by_provider and "anthropic" in by_provider


def imported_modules(d: TempDaemon, *args: str) -> set[str]:
    done = cli(d, *args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    return {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}


def test_start_up_imports_nothing_heavy(d: TempDaemon) -> None:
    """Start-up time is what a user feels on every command: nothing imports httpx, anyio
    or the daemon; `ps` not even typer or rich; other commands not typer's pydantic."""
    heavy = {"httpx", "anyio", "uvicorn", "aiosqlite", "psutil", "pydantic"}
    for args, banned in (
        (["ps", "--json"], {"typer", "rich"}),
        (["--home", str(d.home), "ps", "-a"], {"typer", "rich"}),
        (["logs", "-n", "1", "no-such-agent"], {"rich"}),
        (["daemon", "status", "--json"], {"rich"}),
    ):
        imported = imported_modules(d, *args)
        assert "ironrt.client" in imported
        top = {m.split(".")[0] for m in imported}
        assert not (heavy | banned) & top, (args, (heavy | banned) & top)
        assert not {m for m in imported if m.startswith(("ironrt.daemon", "ironrt.router"))}


def test_ps_fast_path_prints_what_typer_prints(d: TempDaemon) -> None:
    start(d, "agents/hello.py")
    # A trailing `--` is not a plain `ps`: it goes through typer, the same `run()`.
    assert ok(d, "ps", "--all", "--json") == ok(d, "ps", "--all", "--json", "--")
    assert "typer" in {m.split(".")[0] for m in imported_modules(d, "ps", "--json", "--")}
    assert "--all" in ok(d, "ps", "--help")
    assert "-x" in one_line_error(cli(d, "ps", "-x"), code=2)


def test_a_home_that_is_no_folder_is_a_usage_error_and_nothing_is_created(
    tmp_path: Path,
) -> None:
    """`--home ''` was the current folder (typer's Path("") is "."): a `start` made it a
    daemon's home and started one there."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONRT_")}
    cases = {
        "needs a folder": (["--home", "", "ps"], ["--home=", "start", "--", "sleep", "3"]),
        f"{a_file}: not a folder": (["--home", str(a_file), "ps"], ["--home", str(a_file), "up"]),
    }
    for says, commands in cases.items():
        for args in commands:
            done = subprocess.run(
                [sys.executable, "-m", "ironrt", *args],
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=30,
            )
            line = one_line_error(done, code=2)
            assert line == f"ironrt: Invalid value for --home: {says} (see 'ironrt --help')"
    assert list(cwd.iterdir()) == [] and a_file.read_text() == ""
