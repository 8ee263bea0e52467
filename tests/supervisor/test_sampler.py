"""The tree sampler against psutil, on a real process tree: an agent's root (its own
process group), a busy child, and a double-forked orphan that init adopted but that still
belongs to the agent by its process group."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ironrt.supervisor.sampler import TreeSampler, read_stat
from ironrt.tempdaemon import wait_until

TREE = """
import os, subprocess, sys, time
orphan_file = sys.argv[1]
busy = subprocess.Popen([sys.executable, "-c", "import time\\nt=time.time()\\nwhile time.time()-t<30: pass"])
if os.fork() == 0:
    if os.fork() == 0:
        open(orphan_file + ".tmp", "w").write(str(os.getpid()))
        os.rename(orphan_file + ".tmp", orphan_file)
        time.sleep(30)
    os._exit(0)
os.wait()
time.sleep(30)
"""


@pytest.fixture
def tree(tmp_path: Path):  # type: ignore[no-untyped-def]
    orphan_file = tmp_path / "orphan"
    root = subprocess.Popen([sys.executable, "-c", TREE, str(orphan_file)], start_new_session=True)
    wait_until(lambda: orphan_file.exists(), timeout=15)
    orphan = int(orphan_file.read_text())
    wait_until(lambda: len(psutil.Process(root.pid).children()) == 1, timeout=15)
    try:
        yield root.pid, orphan
    finally:
        os.killpg(root.pid, 9)
        root.wait(10)


def test_the_whole_tree_is_counted_as_psutil_sees_it(tree: tuple[int, int]) -> None:
    root, orphan = tree
    assert psutil.Process(orphan).ppid() != root  # adopted: found by its process group
    started = psutil.Process(root).create_time()
    sampler = TreeSampler()
    first = sampler.sample({"a": (root, started)})["a"]
    assert first.num_processes == 3
    assert first.cpu_percent == 0.0  # nothing to measure against yet
    time.sleep(0.6)
    second = sampler.sample({"a": (root, started)})["a"]
    procs = [psutil.Process(root), *psutil.Process(root).children(), psutil.Process(orphan)]
    assert second.num_processes == len(procs) == 3
    rss = sum(p.memory_info().rss for p in procs)
    assert second.rss_bytes == pytest.approx(rss, rel=0.2)
    times = [p.cpu_times() for p in procs]
    seconds = sum(t.user + t.system + t.children_user + t.children_system for t in times)
    assert second.cpu_seconds == pytest.approx(seconds, abs=0.1)
    assert 40 <= second.cpu_percent <= 110  # the busy child, about one core


def test_a_reused_root_pid_is_not_the_agent(tree: tuple[int, int]) -> None:
    root, _ = tree
    started = psutil.Process(root).create_time()
    sample = TreeSampler().sample({"a": (root, started - 100)})["a"]
    assert (sample.num_processes, sample.rss_bytes, sample.cpu_seconds) == (0, 0, 0.0)


def test_a_gone_process_reads_as_none() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert read_stat(int(done.stdout)) is None
    mine = read_stat(os.getpid())
    assert mine is not None and mine.ppid == os.getppid()
    assert mine.create_time == pytest.approx(psutil.Process().create_time(), abs=0.05)
