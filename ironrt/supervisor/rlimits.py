"""The kernel's resource limits of an agent: RLIMIT_NOFILE and RLIMIT_CPU, set on its
gated process before any of its code runs.

The limits are set with prlimit(2) on the shell waiting at its gate (see `process`), so
the agent's program (`exec`ed under the same pid) and every process it starts inherit
them, and no line of the agent ever runs without them. An unprivileged daemon can lower a
hard limit but never raise one above its own, so a request above the daemon's hard limit
is refused at start (422 naming the field) rather than failing at the first spawn.

`max_open_files` is the soft and the hard limit: an agent cannot raise it back. For
`max_cpu_seconds` the soft limit is the value and the hard one a second more: the kernel
sends SIGXCPU at the soft limit (its default action ends the process) and SIGKILL at the
hard one (a second later, or at the daemon's own hard limit if that is lower), so an
agent that catches SIGXCPU to save its work has a moment to do it.
RLIMIT_CPU counts each process's own CPU time, not its tree's.
"""

from __future__ import annotations

import resource

from ironrt.errors import StartFailed
from ironrt.protocol import Agent, StartRequest

#: Seconds between SIGXCPU (soft limit) and SIGKILL (hard limit).
CPU_GRACE_S = 1
#: The soft open-files limit the daemon was started with, before `raise_own_nofile`:
#: what agents without `max_open_files` get, as they would without ironrt (a program
#: using select() breaks past 1024 descriptors, so a higher default is no gift).
_inherited_nofile: int | None = None


def raise_own_nofile() -> int:
    """Raise the daemon's soft open-files limit to its hard one (1024 by default on most
    systems: too few for a router's connections); the number of files it may now open."""
    global _inherited_nofile
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _inherited_nofile is None:
        _inherited_nofile = soft
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def wanted(r: Agent) -> list[tuple[str, int, tuple[int, int]]]:
    """(field, resource, (soft, hard)) for each limit the agent has."""
    out = []
    if r.max_open_files is not None:
        out.append(("max_open_files", resource.RLIMIT_NOFILE, (r.max_open_files,) * 2))
    elif _inherited_nofile is not None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if _inherited_nofile < soft:
            inherited = min(_inherited_nofile, hard)
            out.append(("max_open_files", resource.RLIMIT_NOFILE, (inherited, hard)))
    if r.max_cpu_seconds is not None:
        hard = r.max_cpu_seconds + CPU_GRACE_S
        own = resource.getrlimit(resource.RLIMIT_CPU)[1]
        if own != resource.RLIM_INFINITY:
            hard = min(hard, own)  # never above the daemon's own: prlimit would refuse
        out.append(("max_cpu_seconds", resource.RLIMIT_CPU, (r.max_cpu_seconds, hard)))
    return out


def check(req: StartRequest) -> None:
    """Refuse a limit this daemon could not set (above its own hard limit): StartFailed."""
    for field, which, value in (
        ("max_open_files", resource.RLIMIT_NOFILE, req.max_open_files),
        ("max_cpu_seconds", resource.RLIMIT_CPU, req.max_cpu_seconds),
    ):
        if value is None:
            continue
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY and value > hard:
            raise StartFailed(
                f"`{field}` {value} is above the daemon's own hard limit ({hard}): an "
                f"unprivileged daemon cannot raise it (raise `ulimit -H` where the daemon "
                f"starts, or ask for less)",
                field=field,
            )


def apply(pid: int, r: Agent) -> None:
    """Set the agent's limits on `pid` (its process, still at its gate); StartFailed naming
    the field if the kernel refuses one."""
    for field, which, limits in wanted(r):
        try:
            resource.prlimit(pid, which, limits)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StartFailed(
                f"cannot set `{field}` to {limits[0]}: {reason}", field=field
            ) from exc
