"""Agent processes at the OS level: spawn, identify, wait for, and kill a whole tree.

A process is identified by pid *and* start time, so a pid the kernel reused for another
program is never mistaken for an agent after a daemon restart. Waiting uses a pidfd where
the kernel has one (woken by the kernel, works for processes that are not our children,
i.e. agents reattached after a restart) and falls back to polling.

A new process waits at a gate before it runs any of the agent's code: a tiny `sh` reads
one line from a pipe, then `exec`s the agent (same pid, same start time). The daemon opens
the gate only once the pid is committed to the database, so a daemon killed at any moment
never leaves a process that no record knows: if it dies first, the gate reads end of file
and the shell exits without running anything.

An agent's tree is its process, its descendants, whatever is left in its process group,
and any process carrying its `IRONRT_AGENT_ID` in its environment: a daemon that
double-forks and calls `setsid` leaves the group and the parent chain, but keeps the
environment it inherited.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

import anyio
import psutil

from ironrt.supervisor.procfs import all_stats, read_proc, ticks_at

_START_TIME_TOLERANCE = 0.05  # seconds; /proc start times are in clock ticks
#: A process that started this long before the agent cannot be one of its own (its
#: environment was fixed at its exec, before the agent's id existed). The margin is wide:
#: the agent's start time is a wall-clock time, and the clock may have been stepped since.
_BORN_BEFORE_MARGIN_S = 5.0


@dataclass(slots=True)
class Spawned:
    pid: int
    started: float
    popen: subprocess.Popen[bytes] | None
    #: Write end of the gate pipe while the process waits at its gate; -1 once opened.
    gate: int = -1


#: Exit code of a gated process whose daemon died before opening the gate.
GATE_CLOSED = 125
_GATE = f'IFS= read -r go && [ "$go" = go ] || exit {GATE_CLOSED}; exec "$@" </dev/null'


def spawn(command: list[str], *, cwd: str, env: dict[str, str], log_fd: int) -> Spawned:
    """Start `command`, held at its gate, as the leader of a new session (and so of its
    own process group). Call `open_gate(spawned)` once its pid is recorded.

    Raises OSError when the process cannot be created (a cwd that vanished, no memory).
    """
    gate_read, gate_write = os.pipe2(os.O_CLOEXEC)
    try:
        popen = subprocess.Popen(
            ["/bin/sh", "-c", _GATE, "ironrt-gate", *command],
            cwd=cwd,
            env=env,
            stdin=gate_read,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
        )
    except BaseException:
        os.close(gate_write)
        raise
    finally:
        os.close(gate_read)
    try:
        started = psutil.Process(popen.pid).create_time()
    except psutil.Error:  # exited already; still a valid record
        started = time.time()
    return Spawned(popen.pid, started, popen, gate_write)


def open_gate(spawned: Spawned) -> None:
    """Let the process run the agent (it `exec`s it under the same pid)."""
    if spawned.gate < 0:
        return
    try:
        os.write(spawned.gate, b"go\n")
    except OSError:
        pass  # it died at the gate: its watcher records how
    finally:
        os.close(spawned.gate)
        spawned.gate = -1


def close_gate(spawned: Spawned) -> None:
    """Send the process away without running the agent (its record could not be saved)."""
    if spawned.gate >= 0:
        os.close(spawned.gate)
        spawned.gate = -1


def is_same_process(pid: int, started: float | None) -> bool:
    """True if `pid` is still the very process that started at `started` and not a zombie."""
    if started is None:
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > _START_TIME_TOLERANCE:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def exit_status(popen: subprocess.Popen[bytes] | None) -> tuple[int | None, int | None]:
    """(exit code, signal) of an ended process; (None, None) when it was not our child."""
    if popen is None:
        return None, None
    code = popen.wait()
    if code < 0:
        return None, -code
    return code, None


async def wait_exit(pid: int, started: float | None, popen: subprocess.Popen[bytes] | None) -> None:
    """Return once the process has ended (and reap it if it is our child)."""
    fd = -1
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            # The pid was ours at spawn and pidfd_open succeeded: if it is reused meanwhile
            # the check below catches it (pidfds refer to one process, not one number).
            if is_same_process(pid, started) or popen is not None:
                await anyio.wait_readable(fd)
        finally:
            os.close(fd)
    else:  # pragma: no cover - kernels without pidfd
        while is_same_process(pid, started):
            await anyio.sleep(0.1)
    if popen is not None:
        await anyio.to_thread.run_sync(popen.wait)


def tree(
    pid: int, started: float | None, agent_id: str | None = None, *, born: float | None = None
) -> list[psutil.Process]:
    """The agent's process and all its descendants, plus anything left in its group, plus
    (given `agent_id`) any process that escaped both but carries the agent's id.

    `born`: when the agent's process started (epoch seconds; `started` if not given).
    Only processes started after it can carry its id, so only their environments are
    read: on a host with thousands of long-lived processes a stop reads a handful.

    One pass over /proc (a stop must not cost a psutil object per process on the host)."""
    table = all_stats()
    members: set[int] = set()
    if _is_leader(pid, started):
        members.add(pid)
        children: dict[int, list[int]] = {}
        for child, stat in table.items():
            children.setdefault(stat.ppid, []).append(child)
        todo = [pid]
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in members:
                    members.add(child)
                    todo.append(child)
    # Orphans re-parented to init (their parent exited) are found through the group, and
    # those that also left the group (setsid) through the environment they inherited.
    me = os.getpid()
    oldest = _oldest_ticks(born if born is not None else started)
    for other, stat in table.items():
        if other in members or other == me:
            continue
        if stat.pgrp == pid or (
            agent_id is not None and stat.start_ticks >= oldest and _carries(other, agent_id)
        ):
            members.add(other)
    return _processes(members)


def _oldest_ticks(epoch_s: float | None) -> int:
    """The /proc start time of a process started at `epoch_s`, less the margin; 0 (every
    process) when not known."""
    if epoch_s is None:
        return 0
    return ticks_at(epoch_s - _BORN_BEFORE_MARGIN_S)


def escaped(agent_id: str, born: float | None = None) -> list[psutil.Process]:
    """Live processes carrying the agent's id: what is left of its tree once it ended
    (`born`: when its last run started; older processes are not read, as in `tree`)."""
    me = os.getpid()
    oldest = _oldest_ticks(born)
    return _processes(
        other
        for other, stat in all_stats().items()
        if other != me
        and stat.state != b"Z"
        and stat.start_ticks >= oldest
        and _carries(other, agent_id)
    )


def _is_leader(pid: int, started: float | None) -> bool:
    if started is None:
        return False
    try:
        return abs(psutil.Process(pid).create_time() - started) <= _START_TIME_TOLERANCE
    except psutil.Error:
        return False


def _carries(pid: int, agent_id: str) -> bool:
    """Whether the process's environment names the agent (other users' are unreadable)."""
    env = read_proc(f"/proc/{pid}/environ", 1 << 20)
    return f"IRONRT_AGENT_ID={agent_id}".encode() in env.split(b"\0")


def _processes(pids: Iterable[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))  # pins the start time: never a reused pid
        except psutil.Error:
            continue
    return found


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the group (one syscall, no /proc walk)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_tree(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            if proc.is_running():  # psutil checks pid + start time: never a reused pid
                proc.send_signal(sig)
        except psutil.Error:
            continue


async def kill_tree(procs: list[psutil.Process], grace: float) -> bool:
    """SIGTERM the tree, wait up to `grace`, then SIGKILL what is left.

    Returns True if SIGKILL was needed.
    """
    signal_tree(procs, signal.SIGTERM)
    # A paused (SIGSTOPped) agent only acts on SIGTERM once it runs again.
    signal_tree(procs, signal.SIGCONT)
    deadline = time.monotonic() + grace
    # Most agents die within a millisecond or two of SIGTERM: poll fast at first, then back
    # off, so a quick stop is quick and a slow one costs little CPU.
    pause = 0.001
    while time.monotonic() < deadline:
        if not _alive(procs):
            return False
        await anyio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, 0.05)
    left = [p for p in procs if _is_alive(p)]
    if not left:
        return False
    signal_tree(left, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    pause = 0.001
    while _alive(left) and time.monotonic() < deadline:
        await anyio.sleep(pause)
        pause = min(pause * 2, 0.05)
    return True


def _is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _alive(procs: list[psutil.Process]) -> bool:
    return any(_is_alive(p) for p in procs)
