"""Agents' logs through a real daemon and its log relay: rotation at full speed loses no
line and keeps every bound at every moment; `logs -n` reads across rotated files; `logs
-f` follows an agent across its restarts and says how it ended."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from ironrt.supervisor.logsampler import LogSampler
from ironrt.tempdaemon import TempDaemon, wait_until

MAX = 64 * 1024
KEEP = 3

WRITER = """\
import os, signal
stopping = False
def bye(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, bye)
n = 0
while not stopping:
    n += 1
    os.write(1, f"line {n:09d} {'x' * 40}\\n".encode())
os.write(1, f"END {n}\\n".encode())
"""


def _files(logs: Path, agent_id: str) -> list[Path]:
    """Oldest first: .KEEP … .1, then the live file."""
    live = logs / f"{agent_id}.log"
    rotated = [live.with_name(f"{live.name}.{i}") for i in range(KEEP, 0, -1)]
    return [p for p in [*rotated, live] if p.exists()]


def test_rotation_at_full_speed_loses_nothing_and_keeps_its_bounds(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    writer = tmp_path / "writer.py"
    writer.write_text(WRITER)
    agent_id = daemon.rt.start_agent(str(writer), log_max_size=MAX, log_keep=KEEP)
    logs = daemon.home / "logs"
    live = logs / f"{agent_id}.log"
    with LogSampler(live, KEEP) as sampler:
        wait_until(lambda: len(_files(logs, agent_id)) == KEEP + 1, timeout=30)
        wait_until(lambda: (logs / f"{agent_id}.log.{KEEP}").stat().st_size > 0, timeout=30)
        # Looked often enough while it rotated (a loaded machine starves the sampler thread).
        wait_until(lambda: sampler.samples > 50, timeout=30)
        daemon.rt.stop_agent(agent_id, timeout=10)
    assert not sampler.violations(MAX, KEEP), sampler.violations(MAX, KEEP)
    files = _files(logs, agent_id)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = b"".join(p.read_bytes() for p in files).decode()
    lines = text.splitlines()
    assert lines[-1].startswith("END ")
    last = int(lines[-1].split()[1])
    numbers = [int(line.split()[1]) for line in lines[:-1] if line.startswith("line ")]
    # A contiguous run ending at the last line the agent wrote: no gap, no duplicate (the
    # oldest lines went with the oldest file, as rotation promises).
    first_whole = 1 if lines[0].startswith("line ") else 0  # a split first line is partial
    assert numbers[first_whole:] == list(range(numbers[first_whole], last + 1))
    assert last > 5 * MAX // 60  # it really wrote past several rotations


#: An agent whose last words are many: on SIGTERM it writes ~960 KB (less than its pipe's
#: 1 MiB buffer, so the kernel takes it all at once) and a final line, then exits.
LAST_WORDS = """\
import os, signal, sys, time
def bye(*_):
    for i in range(15000):
        os.write(1, f"closing {i:05d} {'z' * 50}\\n".encode())
    os.write(1, b"GOODBYE\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def _relay_pid(daemon: TempDaemon) -> int:
    """The pid of the log relay serving this daemon's home."""
    home = str(daemon.home)
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(a.endswith("logrelay.py") for a in cmdline) and any(home in a for a in cmdline):
            return int(proc.pid)
    raise AssertionError("no log relay found for this home")


def test_stop_returns_once_the_agents_last_lines_are_in_its_log(
    daemon: TempDaemon, tmp_path: Path
) -> None:
    """`ironrt stop` then `ironrt logs`: the agent's last lines (what it says on its way
    out, often the most telling) are in its log when `stop` returns. The relay is a process
    of its own, which a loaded machine may not run for a while: here it is frozen (SIGSTOP)
    while the agent stops and thawed half a second later, so a `stop` that returned when
    the agent exited would find its last 960 KB still in the pipe."""
    script = tmp_path / "last_words.py"
    script.write_text(LAST_WORDS)
    agent_id = daemon.rt.start_agent(str(script))
    live = daemon.home / "logs" / f"{agent_id}.log"
    wait_until(lambda: b"ready" in _read(live), timeout=20)
    relay = _relay_pid(daemon)
    os.kill(relay, signal.SIGSTOP)
    thaw = threading.Timer(0.5, os.kill, (relay, signal.SIGCONT))
    thaw.start()
    try:
        daemon.rt.stop_agent(agent_id, timeout=10)
        text = live.read_bytes()
    finally:
        thaw.cancel()
        os.kill(relay, signal.SIGCONT)
    assert text.endswith(b"GOODBYE\n"), text[-200:]
    assert text.count(b"closing ") == 15000


def _read(path: Path) -> bytes:
    """The live log as it is now: missing for an instant while it rotates (renamed to
    `.1`, a new one opened), which a reader sees as empty, not as an error."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def test_logs_n_reads_across_rotated_files(daemon: TempDaemon, tmp_path: Path) -> None:
    burst = tmp_path / "burst.py"
    # 16 KiB files hold ~400 of these lines: the 500 asked for span two files.
    burst.write_text(
        "import time\nfor i in range(3000): print(f'line {i:05d} ' + 'y' * 30)\ntime.sleep(60)\n"
    )
    agent_id = daemon.rt.start_agent(str(burst), log_max_size=16384, log_keep=2)
    live = daemon.home / "logs" / f"{agent_id}.log"
    wait_until(lambda: b"line 02999" in _read(live), timeout=20)
    assert live.with_name(f"{live.name}.1").exists()
    out = daemon.cli("logs", agent_id, "-n", "500")
    assert out.returncode == 0, out.stderr
    got = out.stdout.splitlines()
    assert len(got) == 500 and got[-1].startswith("line 02999") and got[0].startswith("line 02500")
    assert live.read_bytes().count(b"\n") < 500  # the lines came from two files
    daemon.rt.stop_agent(agent_id, timeout=5)


def test_logs_follow_across_two_restarts(daemon: TempDaemon, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    crash = tmp_path / "crash.py"
    crash.write_text(
        "import os, time\n"
        f"path = {str(counter)!r}\n"
        "run = int(open(path).read()) + 1 if os.path.exists(path) else 1\n"
        "open(path, 'w').write(str(run))\n"
        "print(f'run {run} says hello', flush=True)\n"
        "time.sleep(0.5)\n"
        "raise SystemExit(4)\n"
    )
    agent_id = daemon.rt.start_agent(
        str(crash), restart="on-failure", max_restarts=2, min_uptime=30.0
    )
    follower = subprocess.run(
        [sys.executable, "-m", "ironrt", "logs", agent_id, "-f", "-n", "100"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert follower.returncode == 0, follower.stderr
    assert [line for line in follower.stdout.splitlines() if line.startswith("run ")] == [
        "run 1 says hello",
        "run 2 says hello",
        "run 3 says hello",
    ]
    assert "failed" in follower.stderr and "2 restarts" in follower.stderr
    assert daemon.rt.get_agent(agent_id).status.value == "failed"


def test_logs_follow_ends_with_exit_1_when_the_daemon_stops(daemon: TempDaemon) -> None:
    agent_id = daemon.rt.start_agent(["sh", "-c", "echo ready; exec sleep 300"])
    follower = subprocess.Popen(
        [sys.executable, "-m", "ironrt", "logs", agent_id, "-f"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "ready\n"  # it follows
        daemon.rt.shutdown_daemon(keep_agents=True, wait=30)
        _, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 1
    assert "daemon stopped" in err
    assert not daemon.rt.ping()  # and it did not start one again
