"""The crash trial: SIGKILL the daemon at random moments (fixed seeds, bounded count) during
start/stop/restart/rm churn and LLM traffic. After each restart the database is intact, no
agent is stuck in a transient state, no process runs unrecorded, no pid is supervised
twice."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from ironrt.protocol import Agent
from ironrt.tempdaemon import TempDaemon, wait_until

KILLS_PER_SEED = 3
SETTLED = {"running", "stopped", "exited", "failed", "killed", "paused"}

TRAFFIC = """\
import time
import openai

client = openai.OpenAI(max_retries=0, timeout=10)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
    except openai.APIError:
        time.sleep(0.05)  # the router is down while its daemon restarts
"""


class Churn:
    """Random operations from a worker thread, paused while the test checks the books."""

    def __init__(self, daemon: TempDaemon, rng: random.Random, marker: str) -> None:
        self.daemon, self.rng, self.marker = daemon, rng, marker
        self.run = threading.Event()
        self.idle = threading.Event()
        self.done = threading.Event()
        self.operations = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with ThreadPoolExecutor(8) as pool:
            while not self.done.is_set():
                if not self.run.is_set():
                    self.idle.set()
                    self.run.wait(0.05)
                    continue
                self.idle.clear()
                # The daemon dies under some of these calls: that is the trial.
                with contextlib.suppress(Exception):
                    self._step(pool)
                self.operations += 1
            self.idle.set()

    def _step(self, pool: ThreadPoolExecutor) -> None:
        rt = self.daemon.rt
        choice = self.rng.random()
        if choice < 0.4:  # a burst of concurrent starts
            count = self.rng.randint(3, 8)
            futures = [
                pool.submit(
                    rt.start_agent,
                    ["sleep", "300"],
                    env={"CRASH_TRIAL": self.marker},
                    restart=self.rng.choice(["no", "always"]),
                )
                for _ in range(count)
            ]
            for future in futures:
                with contextlib.suppress(Exception):
                    future.result(timeout=30)
            return
        agents = [a for a in rt.list_agents() if a.name.startswith("sleep")]
        if not agents:
            return
        target = self.rng.choice(agents).id
        if choice < 0.6:
            rt.stop_agent(target, timeout=1)
        elif choice < 0.8:
            rt.restart_agent(target, timeout=1)
        else:
            rt.remove_agent(target, force=True)

    def pause(self) -> None:
        self.run.clear()
        assert self.idle.wait(60), "churn did not pause"


@pytest.mark.parametrize("seed", [11, 29])
def test_daemon_killed_at_random_moments(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    marker = f"trial-{seed}-{time.monotonic_ns()}"
    traffic = tmp_path / "traffic.py"
    traffic.write_text(TRAFFIC)
    with TempDaemon() as daemon:
        for i in range(2):
            daemon.rt.start_agent(
                str(traffic),
                name=f"traffic{i}",
                restart="always",
                env={"CRASH_TRIAL": marker},
            )
        churn = Churn(daemon, rng, marker)
        churn.thread.start()
        try:
            for _ in range(KILLS_PER_SEED):
                churn.run.set()
                time.sleep(rng.uniform(0.02, 0.6))
                daemon.kill()
                churn.pause()
                _check_database(daemon.home / "ironrt.db")
                daemon.start()
                _check_settled(daemon, marker)
            assert churn.operations > KILLS_PER_SEED
            calls = daemon.rt.traces(limit=1000)
            assert calls, "the traffic agents made no call"
        finally:
            churn.done.set()
            churn.run.set()
            churn.thread.join(60)


def _check_database(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def _check_settled(daemon: TempDaemon, marker: str) -> None:
    def settled() -> bool:
        return all(a.status.value in SETTLED for a in daemon.rt.list_agents())

    wait_until(settled, timeout=30)
    # A process left at its gate by the dead daemon exits by itself (end of file): give
    # such a shell a moment, then every process of the trial must belong to a live agent.
    wait_until(lambda: not _unrecorded(daemon.rt.list_agents(), marker), timeout=10)
    live = [a for a in daemon.rt.list_agents() if a.status.live]
    pids = [a.pid for a in live]
    assert len(pids) == len(set(pids)), "a pid supervised twice"
    for agent in live:
        assert agent.pid is not None and psutil.pid_exists(agent.pid)


def _unrecorded(agents: list[Agent], marker: str) -> list[int]:
    """Processes of this trial that no live agent record accounts for."""
    live = {a.id for a in agents if a.status.live}
    strays = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
            if env.get("CRASH_TRIAL") != marker or proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if env.get("IRONRT_AGENT_ID") not in live:
            strays.append(proc.pid)
    return strays
