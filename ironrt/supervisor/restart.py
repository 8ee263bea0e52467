"""The restart policy (PM2's semantics), decided from an agent's record alone (no I/O).

`no` never restarts; `on-failure` restarts after a non-zero exit, a signal, or an exit
whose status is unknowable (the agent ended while another daemon was its parent: nobody
can say it succeeded, so it counts as a failure); `always` restarts after any exit.

A run shorter than `min_uptime_s` is *unstable*. `max_restarts` caps consecutive unstable
restarts only: a service that crashes once a week is restarted for as long as it lives,
while one that crashes at start gives up after `max_restarts` tries. A stable run resets
the count and the backoff (which doubles with each unstable restart, capped).

A run ended for exceeding `max_memory_bytes` is restarted whatever the policy (PM2's
`max_memory_restart` restarts a `--restart no` process too), by the same rules otherwise:
an agent that outgrows its limit within `min_uptime_s` of every start is a crash loop,
backed off the same way and given up on after `max_restarts` tries.
"""

from __future__ import annotations

from dataclasses import dataclass

from ironrt.protocol import Agent

MAX_BACKOFF_S = 60.0


def failed(r: Agent) -> bool:
    """Anything but a clean exit 0, including an exit status nobody could read."""
    return not (r.exit_code == 0 and r.signal is None)


@dataclass(frozen=True, slots=True)
class Decision:
    restart: bool
    #: The policy wanted a restart, but the unstable runs reached the cap.
    gave_up: bool
    delay_s: float


def decide(
    r: Agent, uptime_s: float | None, first_delay: float, *, forced: bool = False
) -> Decision:
    """What to do after a run ended, updating the record's unstable-restart count.

    `uptime_s` is how long the run lasted (None when unknown: counted as unstable);
    `forced`: restart whatever the policy (the run was ended for its memory).
    """
    if uptime_s is not None and uptime_s >= r.min_uptime_s:
        r.unstable_restarts = 0
    wanted = forced or r.restart == "always" or (r.restart == "on-failure" and failed(r))
    if not wanted:
        return Decision(False, False, 0.0)
    stable = uptime_s is not None and uptime_s >= r.min_uptime_s
    if not stable and r.max_restarts is not None and r.unstable_restarts >= r.max_restarts:
        return Decision(False, True, 0.0)
    delay = backoff(first_delay, r.unstable_restarts)
    if not stable:
        r.unstable_restarts += 1
    return Decision(True, False, delay)


def pending(r: Agent) -> bool:
    """Whether an ended agent's policy still wants it back (its restart was interrupted)."""
    if r.restart == "no" or (r.restart == "on-failure" and not failed(r)):
        return False
    return r.max_restarts is None or r.unstable_restarts <= r.max_restarts


def backoff(first_delay: float, unstable_so_far: int) -> float:
    # The exponent is bounded: with `unlimited`, the count can pass 1,024 (2.0**1024
    # overflows a float) in a crash loop that runs for a day.
    return min(first_delay * 2.0 ** min(unstable_so_far, 32), MAX_BACKOFF_S)
