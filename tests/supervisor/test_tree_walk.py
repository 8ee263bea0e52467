"""The /proc walk that finds an agent's whole tree, on real processes: a process that
escaped the agent's group and parent chain is found by the id in its environment, but
only if it started after the agent; the environments of older processes (most of a
host's) are not read, since none of them can carry an id that did not exist yet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from ironrt.supervisor import process, procfs
from ironrt.tempdaemon import wait_until

AGENT_ID = "ag-tree-walk-test"


@pytest.fixture
def escaped_proc() -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own (as a double-forked daemon would be) that
    carries the agent's id."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, "IRONRT_AGENT_ID": AGENT_ID},
        start_new_session=True,
    )
    try:
        # Popen returns once the exec closed its close-on-exec pipe, which the kernel does
        # before it lays out the new environment: read in that window (a loaded machine
        # widens it), /proc/PID/environ is still empty. Wait until it holds the id.
        mark = f"IRONRT_AGENT_ID={AGENT_ID}".encode()
        wait_until(lambda: mark in procfs.read_proc(f"/proc/{proc.pid}/environ", 1 << 20))
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _created(proc: subprocess.Popen[bytes]) -> float:
    return psutil.Process(proc.pid).create_time()


def test_the_table_reads_start_times_as_psutil_does(
    escaped_proc: subprocess.Popen[bytes],
) -> None:
    """Field 22 of /proc/PID/stat, in clock ticks since boot (psutil's source too), and
    the same turned into epoch seconds and back."""
    stat = procfs.read_stat(escaped_proc.pid)
    assert stat is not None and stat.ppid == os.getpid() and stat.state in (b"S", b"R")
    created = _created(escaped_proc)
    since_boot = created - psutil.boot_time()
    assert abs(stat.start_ticks / os.sysconf("SC_CLK_TCK") - since_boot) < 0.02
    assert abs(stat.create_time - created) < 0.02
    assert abs(procfs.ticks_at(created) - stat.start_ticks) <= 2
    walked = procfs.all_stats()[escaped_proc.pid]  # the walk reads the same line
    assert (walked.ppid, walked.pgrp, walked.start_ticks) == (
        stat.ppid,
        stat.pgrp,
        stat.start_ticks,
    )


def test_an_escaped_process_born_after_the_agent_is_in_its_tree(
    escaped_proc: subprocess.Popen[bytes],
) -> None:
    born = _created(escaped_proc) - 1.0  # the agent started a second before it
    # The agent's own pid is gone (it is not the leader): only the id finds it.
    found = [p.pid for p in process.tree(1 << 22, None, AGENT_ID, born=born)]
    assert found == [escaped_proc.pid]
    assert [p.pid for p in process.escaped(AGENT_ID, born)] == [escaped_proc.pid]
    # Without a start time every process is read, as before.
    assert [p.pid for p in process.escaped(AGENT_ID)] == [escaped_proc.pid]


def test_a_process_older_than_the_agent_is_not_read(
    escaped_proc: subprocess.Popen[bytes],
) -> None:
    """It carries the id (a test set it; no real process could), yet it started well
    before the agent: it cannot be the agent's, and its environment is never read."""
    born = time.time() + 60.0  # an agent that starts a minute from now
    assert process.tree(1 << 22, None, AGENT_ID, born=born) == []
    assert process.escaped(AGENT_ID, born) == []
    # Within the margin (a clock stepped back a little since the agent started) it is.
    near = _created(escaped_proc) + 1.0
    assert [p.pid for p in process.tree(1 << 22, None, AGENT_ID, born=near)] == [escaped_proc.pid]
