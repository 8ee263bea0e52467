"""A daemon killed with SIGKILL loses no agent: the next one reattaches by pid + start time."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil

from ironrt.tempdaemon import TempDaemon, wait_until


def test_sigkill_daemon_then_reattach(daemon: TempDaemon, tmp_path: Path) -> None:
    quitter = tmp_path / "quit-now"
    short = tmp_path / "short.py"
    short.write_text(
        "import os, time\n"
        f"while not os.path.exists({str(quitter)!r}): time.sleep(0.02)\n"
        "raise SystemExit(7)\n"
    )
    long_ids = [daemon.rt.start_agent(["sleep", "120"], name=f"long{i}") for i in range(2)]
    short_id = daemon.rt.start_agent(str(short))
    before = {a.id: a.pid for a in daemon.rt.list_agents()}
    wait_until(
        lambda: all(a.status.value == "running" for a in daemon.rt.list_agents()), timeout=10
    )

    daemon.kill()
    for pid in before.values():  # the agents outlive their daemon
        assert pid is not None and psutil.pid_exists(pid)
    quitter.write_text("")  # one agent ends while no daemon watches
    wait_until(lambda: not _alive(before[short_id]), timeout=10)

    daemon.start()
    agents = {a.id: a for a in daemon.rt.list_agents()}
    assert set(agents) == set(before)  # none lost, none started twice
    for agent_id in long_ids:
        assert agents[agent_id].status.value == "running"
        assert agents[agent_id].pid == before[agent_id]
    assert agents[short_id].status.value == "exited"
    assert agents[short_id].exit_code is None  # its parent is gone: the code is unknowable
    kinds = [(e.kind, e.agent_id) for e in daemon.rt.events(limit=1000)]
    assert ("AgentReattached", long_ids[0]) in kinds and ("AgentExited", short_id) in kinds

    stopped = daemon.rt.stop_agent(long_ids[0], timeout=2)
    assert stopped.status.value == "stopped"
    wait_until(lambda: not _alive(before[long_ids[0]]), timeout=5)
    # The other reattached agent is still watched: its own exit is noticed (its exit
    # status went to init, its new parent, so it is `exited` with no code).
    os.kill(before[long_ids[1]] or 0, signal.SIGTERM)
    wait_until(lambda: daemon.rt.get_agent(long_ids[1]).status.value == "exited", timeout=10)


def test_reused_pid_is_not_mistaken_for_the_agent(daemon: TempDaemon) -> None:
    agent_id = daemon.rt.start_agent(["sleep", "120"])
    wait_until(lambda: daemon.rt.get_agent(agent_id).status.value == "running", timeout=10)
    daemon.kill()
    db = sqlite3.connect(daemon.home / "ironrt.db")
    # Pretend the agent's pid now belongs to another process: this test's own, alive.
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        real_pid = db.execute("SELECT pid FROM agents WHERE id = ?", (agent_id,)).fetchone()[0]
        db.execute("UPDATE agents SET pid = ? WHERE id = ?", (decoy.pid, agent_id))
        db.commit()
        db.close()
        daemon.start()
        agent = daemon.rt.get_agent(agent_id)
        assert agent.status.value == "exited"  # the start time did not match: not ours
        assert decoy.poll() is None  # and the decoy was left alone
    finally:
        decoy.kill()
        decoy.wait()
        os.kill(real_pid, signal.SIGKILL)


def test_second_daemon_on_same_home_refuses(daemon: TempDaemon) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ironrt.daemon"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 3
    assert "already running" in proc.stderr and str(daemon.home) in proc.stderr
    assert daemon.rt.ping()


def test_stale_socket_is_replaced(daemon: TempDaemon) -> None:
    daemon.kill()
    assert (daemon.home / "ironrt.sock").exists()  # left behind by the crash
    daemon.start()
    assert daemon.rt.health().ok


def _alive(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
