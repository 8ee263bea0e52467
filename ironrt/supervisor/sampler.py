"""CPU and memory of each agent's whole process tree, sampled in one pass.

One walk over /proc serves every agent (a parent map built once per sample), so sampling
100 agents costs about what sampling one does. psutil.Process objects are kept between
samples because cpu_percent() measures since the previous call on the same object.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

import psutil


@dataclass(slots=True, frozen=True)
class TreeSample:
    cpu_percent: float
    rss_bytes: int
    num_processes: int
    #: CPU time (user + system) of the tree's processes, with what each already collected
    #: of its ended children: a counter for Prometheus (`ironrt_agent_cpu_seconds_total`).
    #: It drops only when a process of the tree ends without its parent waiting for it.
    cpu_seconds: float = 0.0


class TreeSampler:
    def __init__(self) -> None:
        self._procs: dict[tuple[int, float], psutil.Process] = {}

    def sample(self, roots: dict[str, tuple[int, float | None]]) -> dict[str, TreeSample]:
        """Sample each agent's tree; `roots` maps agent id to (pid, start time)."""
        children: dict[int, list[int]] = defaultdict(list)
        pgroups: dict[int, list[int]] = defaultdict(list)
        for listed in psutil.process_iter(["pid", "ppid"]):
            info = listed.info
            children[info["ppid"]].append(info["pid"])
        wanted_groups = {pid for pid, _ in roots.values()}
        for pid in list(children.get(1, [])):
            try:
                pg = os.getpgid(pid)
            except OSError:
                continue
            if pg in wanted_groups and pg != pid:
                pgroups[pg].append(pid)

        seen: set[tuple[int, float]] = set()
        out: dict[str, TreeSample] = {}
        for agent_id, (root, started) in roots.items():
            pids: list[int] = []
            stack = [root, *pgroups.get(root, [])]
            while stack:
                pid = stack.pop()
                pids.append(pid)
                stack.extend(children.get(pid, ()))
            cpu = 0.0
            cpu_s = 0.0
            rss = 0
            count = 0
            for pid in pids:
                proc = self._process(pid)
                if proc is None:
                    continue
                if pid == root and started is not None and abs(proc.create_time() - started) > 0.05:
                    break  # the root pid was reused: not our agent
                try:
                    with proc.oneshot():
                        cpu += proc.cpu_percent(None)
                        rss += proc.memory_info().rss
                        t = proc.cpu_times()
                        cpu_s += t.user + t.system + t.children_user + t.children_system
                    count += 1
                    seen.add((pid, proc.create_time()))
                except psutil.Error:
                    continue
            out[agent_id] = TreeSample(round(cpu, 1), rss, count, round(cpu_s, 3))
        for key in list(self._procs):
            if key not in seen:
                del self._procs[key]
        return out

    def _process(self, pid: int) -> psutil.Process | None:
        try:
            proc = psutil.Process(pid)
            key = (pid, proc.create_time())
        except psutil.Error:
            return None
        cached = self._procs.get(key)
        if cached is not None:
            return cached
        self._procs[key] = proc
        try:
            proc.cpu_percent(None)  # first call only sets the reference point
        except psutil.Error:
            return None
        return proc
