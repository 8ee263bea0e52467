"""CPU and memory of each agent's whole process tree, sampled in one pass.

One walk over /proc serves every agent (a parent map built once per sample), so sampling
100 agents costs about what sampling one does. Each process is read once, from its
`/proc/<pid>/stat` line (parent, group, CPU times, start, RSS; `procfs.py` reads it), by
plain reads: psutil's `process_iter` built a Process object per process of the machine and
took ~4x as long, all of it holding the GIL in a worker thread, which the router's event
loop then waited for (every interval, on a box with hundreds of processes, a few calls'
worth of p99).
CPU percent is measured between two samples of the same process (pid and start time).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from ironrt.supervisor.procfs import ProcStat, all_stats, read_stat

__all__ = ["ProcStat", "TreeSample", "TreeSampler", "read_stat"]


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
        #: (pid, start ticks) -> (own CPU seconds, monotonic time) at the last sample.
        self._last: dict[tuple[int, int], tuple[float, float]] = {}

    def sample(self, roots: dict[str, tuple[int, float | None]]) -> dict[str, TreeSample]:
        """Sample each agent's tree; `roots` maps agent id to (pid, start time)."""
        now = time.monotonic()
        stats = all_stats()
        children: dict[int, list[int]] = defaultdict(list)
        for pid, stat in stats.items():
            children[stat.ppid].append(pid)
        wanted_groups = {pid for pid, _ in roots.values()}
        # Processes that left their agent's tree (double-forked daemons, reparented to
        # init) still belong to it by their process group.
        pgroups: dict[int, list[int]] = defaultdict(list)
        for pid in children.get(1, ()):
            pg = stats[pid].pgrp
            if pg in wanted_groups and pg != pid:
                pgroups[pg].append(pid)

        seen: dict[tuple[int, int], tuple[float, float]] = {}
        out: dict[str, TreeSample] = {}
        for agent_id, (root, started) in roots.items():
            cpu = cpu_s = 0.0
            rss = count = 0
            top = stats.get(root)
            if top is not None and (started is None or abs(top.create_time - started) <= 0.05):
                stack = [root, *pgroups.get(root, ())]
                while stack:
                    pid = stack.pop()
                    member = stats.get(pid)
                    if member is None:
                        continue
                    stack.extend(children.get(pid, ()))
                    key = (pid, member.start_ticks)
                    before = self._last.get(key)
                    if before is not None and now > before[1]:
                        cpu += (member.own_cpu_s - before[0]) / (now - before[1]) * 100
                    seen[key] = (member.own_cpu_s, now)
                    rss += member.rss_bytes
                    cpu_s += member.cpu_s
                    count += 1
            out[agent_id] = TreeSample(round(max(cpu, 0.0), 1), rss, count, round(cpu_s, 3))
        self._last = seen
        return out
