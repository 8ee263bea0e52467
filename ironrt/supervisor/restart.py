"""The restart policy, decided from an agent's record alone (no I/O, easy to test).

`no` never restarts; `on-failure` restarts after a non-zero exit or a signal; `always`
restarts after any exit. Either stops at `max_restarts`, and the delay doubles each time
(capped), so a crash loop costs little and gives up in bounded time.
"""

from __future__ import annotations

from ironrt.protocol import Agent

MAX_BACKOFF_S = 60.0


def failed(r: Agent) -> bool:
    return r.signal is not None or (r.exit_code is not None and r.exit_code != 0)


def should_restart(r: Agent) -> bool:
    if r.restart == "no" or r.restarts >= r.max_restarts:
        return False
    if r.restart == "always":
        return True
    return failed(r)


def backoff(first_delay: float, restarts_so_far: int) -> float:
    return min(first_delay * 2.0**restarts_so_far, MAX_BACKOFF_S)
