"""Agent lifecycle through a real daemon: environment, stop of a whole tree, restarts."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from ironrt.errors import AgentNotFound, Conflict, StartFailed
from ironrt.tempdaemon import TempDaemon, wait_until


def write(path: Path, code: str) -> str:
    path.write_text(textwrap.dedent(code))
    return str(path)


def test_child_environment(
    daemon: TempDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-caller-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real-caller-secret")
    monkeypatch.setenv("MY_SETTING", "from-caller")
    script = write(
        tmp_path / "envdump.py",
        """
        import json, os, sys
        json.dump({"env": dict(os.environ), "cwd": os.getcwd()}, open(sys.argv[1], "w"))
    """,
    )
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    ids = [
        daemon.rt.start_agent(script, [str(o)], env={"EXTRA": "yes"}, cwd=str(tmp_path))
        for o in outs
    ]
    for agent_id in ids:
        assert daemon.rt.wait(agent_id, timeout=20).exit_code == 0
    dumps = [json.loads(o.read_text()) for o in outs]
    router = daemon.router_url
    tokens = set()
    for agent_id, dump in zip(ids, dumps, strict=True):
        env = dump["env"]
        assert dump["cwd"] == str(tmp_path)
        assert env["IRONRT_AGENT_ID"] == agent_id
        assert env["IC_TOKEN"].startswith("ic-") and len(env["IC_TOKEN"]) >= 43
        assert env["OPENAI_API_KEY"] == env["IC_TOKEN"] == env["ANTHROPIC_API_KEY"]
        assert env["OPENAI_BASE_URL"] == f"{router}/v1" == env["OPENAI_API_BASE"]
        assert env["ANTHROPIC_BASE_URL"] == router == env["IRONRT_ROUTER_URL"]
        assert "127.0.0.1" in env["NO_PROXY"].split(",") and "localhost" in env["no_proxy"].split(
            ","
        )
        assert env["MY_SETTING"] == "from-caller" and env["EXTRA"] == "yes"
        assert "sk-real-caller-secret" not in json.dumps(env)
        assert "sk-ant-real-caller-secret" not in json.dumps(env)
        tokens.add(env["IC_TOKEN"])
    assert len(tokens) == 2
    db = (daemon.home / "ironrt.db").read_bytes()
    assert b"sk-real-caller-secret" not in db and b"sk-ant-real-caller-secret" not in db


def test_stop_kills_whole_tree(daemon: TempDaemon, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = write(
        tmp_path / "forker.py",
        f"""
        import os, signal, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(120)
    """,
    )
    agent_id = daemon.rt.start_agent(script)
    wait_until(lambda: pidfile.exists() and pidfile.read_text(), timeout=15)
    grandchild = psutil.Process(int(pidfile.read_text()))
    leader = psutil.Process(daemon.rt.get_agent(agent_id).pid or 0)
    stopped = daemon.rt.stop_agent(agent_id, timeout=0.5)
    assert stopped.status.value == "stopped"
    assert stopped.signal == 9  # it ignored SIGTERM, so the grace period ran out
    for proc in (leader, grandchild):
        wait_until(
            lambda p=proc: not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, timeout=5
        )
    kinds = [e.kind for e in daemon.rt.events(agent=agent_id)]
    assert {"AgentForceKilled", "AgentStopped"} <= set(kinds)


def test_restart_on_failure_up_to_cap_then_failed(daemon: TempDaemon, tmp_path: Path) -> None:
    script = write(tmp_path / "crash.py", "import sys; print('crashing'); sys.exit(3)\n")
    agent_id = daemon.rt.start_agent(script, restart="on-failure", max_restarts=2)
    final = daemon.rt.wait(agent_id, timeout=30)
    assert final.status.value == "failed"
    assert final.restarts == 2 and final.exit_code == 3
    assert "restart limit" in (final.error or "")
    events = [e for e in daemon.rt.events(agent=agent_id)]
    restarting = [e for e in events if e.kind == "AgentRestarting"]
    assert [e.attempt for e in restarting] == [1, 2]
    delays = [float(str(e.delay_s)) for e in restarting]
    assert delays[1] == pytest.approx(2 * delays[0])  # exponential backoff
    assert daemon.rt.logs(agent_id).count("crashing") == 3


def test_restart_always_restarts_clean_exit(daemon: TempDaemon, tmp_path: Path) -> None:
    script = write(tmp_path / "once.py", "print('ran')\n")
    agent_id = daemon.rt.start_agent(script, restart="always", max_restarts=1)
    final = daemon.rt.wait(agent_id, timeout=30)
    assert final.restarts == 1 and final.exit_code == 0


def test_no_restart_for_clean_exit_on_failure_policy(daemon: TempDaemon, tmp_path: Path) -> None:
    script = write(tmp_path / "ok.py", "print('fine')\n")
    agent_id = daemon.rt.start_agent(script, restart="on-failure")
    final = daemon.rt.wait(agent_id, timeout=20)
    assert (final.status.value, final.exit_code, final.restarts) == ("exited", 0, 0)


def test_killed_by_signal_is_reported(daemon: TempDaemon, tmp_path: Path) -> None:
    script = write(
        tmp_path / "selfkill.py", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    final = daemon.rt.wait(daemon.rt.start_agent(script), timeout=20)
    assert final.status.value == "killed" and final.signal == 11 and final.exit_code is None


def test_missing_script_and_not_executable_are_clear_errors(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    with pytest.raises(StartFailed, match="no such script"):
        daemon.rt.start_agent(str(tmp_path / "nope.py"))
    plain = tmp_path / "plain.sh"
    plain.write_text("echo hi\n")
    with pytest.raises(StartFailed, match="not executable"):
        daemon.rt.start_agent(str(plain))
    with pytest.raises(StartFailed, match="not found on PATH"):
        daemon.rt.start_agent(["definitely-not-a-program-xyz"])
    assert daemon.rt.list_agents() == []  # no silent records


def test_names_prefixes_and_non_python_commands(daemon: TempDaemon) -> None:
    first = daemon.rt.start_agent(["sleep", "30"], name="sleeper")
    with pytest.raises(Conflict, match="already running"):
        daemon.rt.start_agent(["sleep", "30"], name="sleeper")
    assert daemon.rt.get_agent("sleeper").id == first
    assert daemon.rt.get_agent(first[:5]).id == first
    with pytest.raises(AgentNotFound):
        daemon.rt.get_agent("no-such-agent")
    daemon.rt.stop_agent("sleeper", timeout=2)
    again = daemon.rt.start_agent(["sleep", "30"], name="sleeper")  # the name is free again
    assert again != first and daemon.rt.get_agent("sleeper").id == again
    daemon.rt.stop_agent(again, timeout=2)
    removed = daemon.rt.remove_agent(first)
    assert removed.id == first
    with pytest.raises(AgentNotFound):
        daemon.rt.get_agent(first)


def test_metrics_sample_the_tree(daemon: TempDaemon, tmp_path: Path) -> None:
    script = write(
        tmp_path / "busy.py",
        """
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        end = time.time() + 60
        while time.time() < end:
            sum(range(10000))
    """,
    )
    agent_id = daemon.rt.start_agent(script)
    wait_until(lambda: daemon.rt.get_metrics(agent_id).num_processes == 2, timeout=15)
    wait_until(lambda: daemon.rt.get_metrics(agent_id).cpu_percent > 10, timeout=15)
    # `starting` until it has lived STARTSECS (supervisord's rule), then `running`.
    wait_until(lambda: daemon.rt.get_metrics(agent_id).status.value == "running", timeout=5)
    m = daemon.rt.get_metrics(agent_id)
    assert m.rss_bytes > 5_000_000 and m.uptime_s >= 1.0
    assert m.budget_usd is None and m.llm_calls == 0
    daemon.rt.stop_agent(agent_id, timeout=2)


def test_logs_and_rotation_keep_child_writing(daemon: TempDaemon, tmp_path: Path) -> None:
    script = write(
        tmp_path / "talk.py",
        "import sys\nfor i in range(5): print('line', i)\nprint('oops', file=sys.stderr)\n",
    )
    agent_id = daemon.rt.start_agent(script)
    daemon.rt.wait(agent_id, timeout=20)
    text = daemon.rt.logs(agent_id)
    assert "line 0" in text and "line 4" in text and "oops" in text
    assert daemon.rt.logs(agent_id, tail=1).strip() == "oops"
    followed = b"".join(daemon.rt.follow_logs(agent_id))  # ends by itself: the agent is done
    assert b"line 4" in followed
    assert sys.executable  # the agent ran with the caller's Python
    assert os.path.exists(daemon.home / "logs" / f"{agent_id}.log")


def test_limits_change_and_clear_on_a_running_agent(daemon: TempDaemon) -> None:
    agent_id = daemon.rt.start_agent(["sleep", "30"], rpm=5, budget=1.0)
    changed = daemon.rt.update_agent(agent_id, pii="redact", tpm=1000)
    assert (changed.pii, changed.rpm, changed.tpm, changed.budget_usd) == ("redact", 5, 1000, 1.0)
    cleared = daemon.rt.update_agent(agent_id, rpm=None, budget_usd=None)  # null removes a limit
    assert (cleared.rpm, cleared.tpm, cleared.budget_usd) == (None, 1000, None)
    from ironrt.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="rpm"):
        daemon.rt.update_agent(agent_id, rpm=0)
    daemon.rt.stop_agent(agent_id, timeout=2)


WRONG_TYPES: list[tuple[dict[str, object], str]] = [
    ({"log_max_size": "10XB"}, "`log_max_size`: expected `int | null`, got `str`"),
    ({"budget": "abc"}, "`budget`: expected `float | null`, got `str`"),
    ({"min_uptime": "5x"}, "`min_uptime`: expected `float`, got `str`"),
    ({"max_memory": "1G"}, "`max_memory`: expected `int | null`, got `str`"),
    ({"env": {"PORT": 8080}}, "`env`: expected `str`, got `int`"),
    ({"restart": "sometimes"}, "`restart`: invalid enum value 'sometimes'"),
]


def test_a_start_option_of_the_wrong_type_is_refused_by_its_name(daemon: TempDaemon) -> None:
    """Before, `log_max_size="10XB"` said "'<=' not supported between instances of 'int'
    and 'str'", and `budget="abc"` named no option at all."""
    from ironrt.errors import InvalidRequest

    for options, says in WRONG_TYPES:
        with pytest.raises(InvalidRequest) as raised:
            daemon.rt.start_agent(["sleep", "30"], **options)  # type: ignore[arg-type]
        assert str(raised.value) == says
    assert daemon.rt.list_agents() == []
