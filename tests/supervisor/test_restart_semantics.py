"""PM2's restart semantics through a real daemon: a cap on *consecutive unstable* restarts,
`unlimited`, and a policy that survives the daemon (reattached and resurrected agents)."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest

from ironrt.errors import InvalidRequest
from ironrt.tempdaemon import TempDaemon, wait_until


def script(tmp_path: Path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(code)
    return str(path)


def test_a_crash_at_once_fails_after_exactly_n_restarts(daemon: TempDaemon, tmp_path: Path) -> None:
    crash = script(tmp_path, "crash.py", "raise SystemExit(3)\n")
    agent_id = daemon.rt.start_agent(crash, restart="always", max_restarts=3, min_uptime=5.0)
    agent = daemon.rt.wait(agent_id, timeout=30)
    assert agent.status.value == "failed"
    assert agent.restarts == 3 and agent.unstable_restarts == 3
    assert "restart limit (3)" in (agent.error or "")
    kinds = [e.kind for e in daemon.rt.events(agent=agent_id, limit=100)]
    assert kinds.count("AgentRestarting") == 3 and kinds[-1] == "AgentFailed"


def test_runs_longer_than_min_uptime_restart_past_the_cap(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    # Each run lives 0.4 s, past its 0.2 s minimum uptime: every crash is a stable one,
    # so `--max-restarts 1` never ends it (a weekly crash must not end a service for good).
    steady = script(tmp_path, "steady.py", "import time\ntime.sleep(0.4)\nraise SystemExit(9)\n")
    agent_id = daemon.rt.start_agent(steady, restart="on-failure", max_restarts=1, min_uptime=0.2)
    wait_until(lambda: daemon.rt.get_agent(agent_id).restarts >= 4, timeout=30)
    agent = daemon.rt.stop_agent(agent_id, timeout=5)
    assert agent.status.value == "stopped"
    assert agent.unstable_restarts == 0
    assert agent.max_restarts == 1


def test_unlimited_restarts(daemon: TempDaemon, tmp_path: Path) -> None:
    crash = script(tmp_path, "crash.py", "raise SystemExit(1)\n")
    agent_id = daemon.rt.start_agent(crash, restart="always", max_restarts=None)
    assert daemon.rt.get_agent(agent_id).max_restarts is None
    # Past the default cap of 5: the backoff doubles (0.05 s first), the count has no end.
    wait_until(lambda: daemon.rt.get_agent(agent_id).unstable_restarts >= 7, timeout=30)
    assert daemon.rt.get_agent(agent_id).status.value != "failed"
    daemon.rt.stop_agent(agent_id, timeout=5)
    assert daemon.rt.get_agent(agent_id).status.value == "stopped"
    out = daemon.cli("start", crash, "--restart", "always", "--max-restarts", "unlimited")
    assert out.returncode == 0, out.stderr
    assert daemon.rt.get_agent(out.stdout.strip()).max_restarts is None


def test_bad_restart_options_are_refused(daemon: TempDaemon, tmp_path: Path) -> None:
    ok = script(tmp_path, "ok.py", "pass\n")
    for option, value in (
        ("--max-restarts", "lots"),
        ("--max-restarts", "-2"),
        ("--min-uptime", "5 parsecs"),
        ("--min-uptime", "2d"),
        ("--log-max-size", "12 bananas"),
        ("--log-max-size", "10"),
    ):
        out = daemon.cli("start", ok, option, value)
        assert out.returncode != 0 and option in out.stderr, (option, value, out.stderr)
    with pytest.raises(InvalidRequest, match="min_uptime"):
        daemon.rt.start_agent(ok, min_uptime=-1.0)
    assert daemon.rt.list_agents() == []


def test_policy_applies_to_a_reattached_agent(daemon: TempDaemon, tmp_path: Path) -> None:
    quit_file = tmp_path / "quit"
    waits = script(
        tmp_path,
        "waits.py",
        "import os, time\n"
        f"while not os.path.exists({str(quit_file)!r}): time.sleep(0.02)\n"
        f"os.unlink({str(quit_file)!r})\n"
        "raise SystemExit(9)\n",
    )
    agent_id = daemon.rt.start_agent(waits, restart="on-failure", min_uptime=0.1)
    wait_until(lambda: daemon.rt.get_agent(agent_id).status.value == "running", timeout=10)
    first_pid = daemon.rt.get_agent(agent_id).pid
    daemon.rt.shutdown_daemon(keep_agents=True, wait=30)
    assert daemon.proc is not None
    daemon.proc.wait(10)
    daemon.start()
    assert daemon.rt.get_agent(agent_id).pid == first_pid  # reattached, not restarted
    quit_file.write_text("")  # exits 9 under a daemon that is not its parent
    wait_until(
        lambda: (
            daemon.rt.get_agent(agent_id).restarts == 1
            and daemon.rt.get_agent(agent_id).status.value == "running"
        ),
        timeout=15,
    )
    agent = daemon.rt.get_agent(agent_id)
    assert agent.pid != first_pid and agent.exit_code is None


def test_resurrect_after_a_reboot(daemon: TempDaemon, tmp_path: Path) -> None:
    forever = script(tmp_path, "forever.py", "import time\nwhile True: time.sleep(1)\n")
    always = daemon.rt.start_agent(forever, restart="always", name="svc", budget=2.0)
    on_failure = daemon.rt.start_agent(forever, restart="on-failure", name="worker")
    plain = daemon.rt.start_agent(forever, name="oneshot")
    wait_until(
        lambda: all(a.status.value == "running" for a in daemon.rt.list_agents()), timeout=10
    )
    before = {a.id: a for a in daemon.rt.list_agents()}

    daemon.crash_host()
    for agent in before.values():
        assert agent.pid is not None and not psutil.pid_exists(agent.pid)
    daemon.start()

    wait_until(
        lambda: (
            daemon.rt.get_agent(always).status.value == "running"
            and daemon.rt.get_agent(on_failure).status.value == "running"
        ),
        timeout=15,
    )
    for agent_id in (always, on_failure):
        agent = daemon.rt.get_agent(agent_id)
        assert agent.pid != before[agent_id].pid and psutil.pid_exists(agent.pid or 0)
        assert agent.restarts == 1 and not agent.lost
        assert agent.name == before[agent_id].name and agent.command == before[agent_id].command
    assert daemon.rt.get_agent(always).budget_usd == 2.0
    gone = daemon.rt.get_agent(plain)
    assert gone.status.value == "exited" and gone.lost and gone.exit_code is None
    kinds = {(e.kind, e.agent_id) for e in daemon.rt.events(limit=1000)}
    assert ("AgentResurrected", always) in kinds and ("AgentExited", plain) in kinds
    # A resurrected agent is supervised like any other: its token works, stop stops it.
    stopped = daemon.rt.stop_agent(always, timeout=5)
    assert stopped.status.value == "stopped"


def test_stop_interrupted_by_a_daemon_kill_is_finished(daemon: TempDaemon, tmp_path: Path) -> None:
    # The agent takes 1.5 s to honour SIGTERM: the daemon dies during the grace period.
    termed = tmp_path / "got-sigterm"
    slow = script(
        tmp_path,
        "slow.py",
        "import signal, sys, time\n"
        "def bye(*_):\n"
        f"    open({str(termed)!r}, 'a').write('x')\n"
        "    time.sleep(1.5)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "while True: time.sleep(0.05)\n",
    )
    agent_id = daemon.rt.start_agent(slow)
    wait_until(lambda: daemon.rt.get_agent(agent_id).status.value == "running", timeout=10)
    pid = daemon.rt.get_agent(agent_id).pid
    assert pid is not None
    done: list[object] = []
    thread = threading.Thread(
        target=lambda: done.append(_swallow(lambda: daemon.rt.stop_agent(agent_id, timeout=30)))
    )
    thread.start()
    # In the grace period: SIGTERM is sent once `stopping` is on disk.
    wait_until(termed.exists, timeout=10)
    daemon.kill()
    thread.join(30)
    daemon.start()
    wait_until(lambda: daemon.rt.get_agent(agent_id).status.value == "stopped", timeout=20)
    assert not _alive(pid)
    # The daemon lived through the agent's exit (no illegal transition ended it).
    assert daemon.rt.ping()
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert len(done) == 1  # the first stop got an answer (an error: its daemon died)


def _swallow(fn: object) -> object:
    assert callable(fn)
    try:
        return fn()
    except Exception as exc:  # the daemon died under it: expected
        return exc


def test_restart_of_a_reattached_agent(daemon: TempDaemon) -> None:
    agent_id = daemon.rt.start_agent(["sleep", "300"])
    wait_until(lambda: daemon.rt.get_agent(agent_id).status.value == "running", timeout=10)
    old_pid = daemon.rt.get_agent(agent_id).pid
    daemon.kill()
    daemon.start()
    assert daemon.rt.get_agent(agent_id).pid == old_pid
    agent = daemon.rt.restart_agent(agent_id, timeout=5)
    assert agent.status.value in ("starting", "running") and agent.pid != old_pid
    assert agent.restarts == 1
    assert old_pid is not None and not _alive(old_pid)
    # The new run is this daemon's child: its exit code is known again.
    assert agent.pid is not None
    psutil.Process(agent.pid).terminate()
    ended = daemon.rt.wait(agent_id, timeout=10)
    assert ended.status.value == "killed" and ended.signal == 15


def _alive(pid: int) -> bool:
    """Running, not a zombie: an agent whose parent daemon died is reaped by init later."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
