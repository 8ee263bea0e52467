"""Processes as /proc tells of them: one parser of `/proc/<pid>/stat` and one clock.

Two parts of the supervisor walk every process of the host: a stop (`process.tree`, the
agent's whole tree, escaped processes included) and the sampler (CPU and memory of each
agent's tree, every interval). Both read the same line of each process (parent, group,
state, CPU times, start time, RSS) and both turn its start time, in clock ticks since boot,
to and from the epoch seconds psutil and the database use. Read here once, with raw
syscalls: on a host with thousands of processes a psutil object per process cost several
times as much, all of it holding the GIL the router's event loop waits for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

__all__ = [
    "CLOCK_TICKS",
    "ProcStat",
    "all_stats",
    "parse_stat",
    "read_proc",
    "read_stat",
    "ticks_at",
]

#: /proc counts CPU and start times in these per second.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(slots=True, frozen=True)
class ProcStat:
    """One process, from its `/proc/<pid>/stat` line."""

    ppid: int
    pgrp: int
    #: `R`, `S`, `Z` (a zombie: ended, not yet waited for), ...
    state: bytes
    #: user + system, and what it collected of its ended children (seconds).
    cpu_s: float
    own_cpu_s: float
    #: Since boot, in clock ticks: with the pid, what tells a reused pid apart.
    start_ticks: int
    rss_bytes: int

    @property
    def create_time(self) -> float:
        """As psutil computes it (boot time plus start), so it compares with theirs."""
        return psutil.boot_time() + self.start_ticks / CLOCK_TICKS


def ticks_at(epoch_s: float) -> int:
    """The start time /proc gives a process started at `epoch_s` (`create_time`'s inverse;
    0 for a time before the boot)."""
    return max(int((epoch_s - psutil.boot_time()) * CLOCK_TICKS), 0)


def parse_stat(data: bytes) -> ProcStat | None:
    """A `/proc/<pid>/stat` line read, or None if it is not one (cut short, empty)."""
    # The command name (2nd field) may hold spaces and parentheses: split after it. The
    # fields below count from the state, field 3 of stat(5).
    try:
        f = data[data.rindex(b")") + 2 :].split()
        utime, stime, cutime, cstime = int(f[11]), int(f[12]), int(f[13]), int(f[14])
        return ProcStat(
            ppid=int(f[1]),
            pgrp=int(f[2]),
            state=f[0],
            cpu_s=(utime + stime + cutime + cstime) / CLOCK_TICKS,
            own_cpu_s=(utime + stime) / CLOCK_TICKS,
            start_ticks=int(f[19]),
            rss_bytes=int(f[21]) * _PAGE,
        )
    except (ValueError, IndexError):
        return None


def read_stat(pid: int) -> ProcStat | None:
    """None if the process is gone (or not readable)."""
    return parse_stat(read_proc(f"/proc/{pid}/stat"))


def all_stats() -> dict[int, ProcStat]:
    """Every process of the host (those that end meanwhile left out), by pid."""
    out: dict[int, ProcStat] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = parse_stat(read_proc(f"/proc/{name}/stat"))
            if stat is not None:
                out[int(name)] = stat
    return out


def read_proc(path: str, limit: int = 4096) -> bytes:
    """A /proc file's bytes, or b"" (gone, or another user's): plain syscalls, no file
    object, since a walk reads one per process of the host."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.read(fd, limit)
    except OSError:
        return b""
    finally:
        os.close(fd)
