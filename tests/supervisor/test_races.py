"""Operations that race, requests the OS would refuse, and processes that try to escape:
each through a real daemon, its socket and real child processes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from ironrt.errors import AgentNotFound, Conflict, IronrtError
from ironrt.tempdaemon import TempDaemon, wait_until
from tests.control.test_bad_input import raw


def test_concurrent_starts_of_one_name_give_one_agent(daemon: TempDaemon) -> None:
    def start(_: int) -> str | None:
        try:
            return daemon.rt.start_agent(["sleep", "60"], name="dup")
        except Conflict:
            return None

    with ThreadPoolExecutor(20) as pool:
        started = [agent_id for agent_id in pool.map(start, range(20)) if agent_id]
    assert len(started) == 1
    assert daemon.rt.get_agent("dup").id == started[0]
    assert [a.name for a in daemon.rt.list_agents()] == ["dup"]


REFUSED_BY_THE_OS = [
    ({"env": {"BAD=NAME": "1"}}, "env"),
    ({"env": {"": "1"}}, "env"),
    ({"env_overrides": {"A": "x\u0000y"}}, "env_overrides"),
    ({"cwd": "/tmp\u0000/x"}, "cwd"),
    ({"command": ["sleep", "6\u00000"]}, "command"),
    ({"name": "a\u0000b"}, "name"),
    # Not the OS's refusals, but as sure a failure: the agent would end at once (127, 126).
    ({"python": "/nonexistent/python"}, "python"),
    ({"python": "/etc/passwd"}, "python"),
    ({"python": "no-such-python-here"}, "python"),
    ({"env_overrides": {"IRONRT_HOME": "/x"}}, "env_overrides"),
    ({"name": "team/bot"}, "name"),  # it could never be addressed: /v1/agents/team/bot
]


def test_a_start_the_os_would_refuse_is_a_422_that_leaves_nothing(daemon: TempDaemon) -> None:
    for change, field in REFUSED_BY_THE_OS:
        body = {"command": ["sleep", "60"], "cwd": str(daemon.home), **change}
        status, answer = raw(daemon, "POST", "/v1/agents", json.dumps(body).encode())
        assert status == 422, answer
        error = answer["error"]
        assert isinstance(error, dict) and error["field"] == field, answer
    assert daemon.rt.list_agents() == []
    daemon.kill()
    daemon.start()
    assert daemon.rt.list_agents() == []  # no ghost record after a restart either


def test_a_vanished_cwd_is_a_clear_error(daemon: TempDaemon, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    with pytest.raises(IronrtError, match="gone"):
        daemon.rt.start_agent(["sleep", "60"], cwd=str(gone))
    assert daemon.rt.list_agents() == []


def test_rm_and_restart_at_once_leak_nothing(daemon: TempDaemon) -> None:
    for round_ in range(5):
        agent_id = daemon.rt.start_agent(["sleep", "60"], name=f"r{round_}")
        pid = daemon.rt.get_agent(agent_id).pid
        with ThreadPoolExecutor(2) as pool:
            results = [
                pool.submit(_quietly, daemon.rt.remove_agent, agent_id, force=True),
                pool.submit(_quietly, daemon.rt.restart_agent, agent_id, timeout=2),
            ]
            for result in results:
                result.result(timeout=60)
        # Whatever order they ran in, the agent is gone and so is every process it had.
        assert agent_id not in {a.id for a in daemon.rt.list_agents()}
        wait_until(lambda a=agent_id: not _runs_agent(a), timeout=10)
        assert pid is not None and not _alive(pid)
    daemon.kill()
    daemon.start()
    assert daemon.rt.list_agents() == []  # and it does not come back


def _quietly(fn: Callable[..., object], *args: object, **kwargs: object) -> object:
    """The operation that lost the race finds no agent: that is its right answer."""
    try:
        return fn(*args, **kwargs)
    except AgentNotFound as exc:
        return exc


def _escaper(tmp_path: Path, then: str) -> tuple[Path, Path]:
    """An agent whose grandchild leaves its group and parent chain (fork, setsid, fork:
    a classic daemon) and writes its pid to a marker file; the agent then runs `then`."""
    marker = tmp_path / "grandchild.pid"
    agent = tmp_path / "escaper.py"
    agent.write_text(
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
        "        time.sleep(120)\n"
        "    os._exit(0)\n"
        f"while not os.path.exists({str(marker)!r}): time.sleep(0.01)\n" + then
    )
    return agent, marker


def test_a_setsid_grandchild_is_stopped_with_its_agent(daemon: TempDaemon, tmp_path: Path) -> None:
    agent, marker = _escaper(tmp_path, then="time.sleep(120)\n")
    agent_id = daemon.rt.start_agent(str(agent))
    wait_until(lambda: marker.exists() and marker.read_text().strip() != "", timeout=10)
    grandchild = int(marker.read_text())
    leader = daemon.rt.get_agent(agent_id).pid
    assert leader is not None and os.getpgid(grandchild) != os.getpgid(leader)  # it escaped
    assert daemon.rt.stop_agent(agent_id, timeout=5).status.value == "stopped"
    wait_until(lambda: not _alive(grandchild), timeout=10)


def test_an_escaped_grandchild_ends_with_an_agent_that_exits(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    agent, marker = _escaper(tmp_path, then="time.sleep(0.2)\n")
    agent_id = daemon.rt.start_agent(str(agent))
    assert daemon.rt.wait(agent_id, timeout=20).status.value == "exited"
    grandchild = int(marker.read_text())
    wait_until(lambda: not _alive(grandchild), timeout=10)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _runs_agent(agent_id: str) -> bool:
    """Whether any process still carries the agent's id in its environment."""
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("IRONRT_AGENT_ID") == agent_id and _alive(proc.pid):
                return True
        except psutil.Error:
            continue
    return False


def test_many_concurrent_starts_are_all_recorded(daemon: TempDaemon) -> None:
    with ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(lambda i: daemon.rt.start_agent(["sleep", "60"]), range(20)))
    names = [a.name for a in daemon.rt.list_agents()]
    assert len(set(names)) == 20 and len(set(ids)) == 20
