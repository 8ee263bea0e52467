"""The agent lifecycle: which status may follow which, in one place.

    starting ──▶ running ──▶ stopping ──▶ stopped
       │  ▲         │  ▲
       │  │         ▼  │ (budget raised, window reset)
       │  │       paused (SIGSTOPped by `--on-budget pause`)
       │  └─────────┤ (restart policy, `ironrt restart`)
       ▼            ▼
     failed       exited / killed

A daemon that finds a live agent's process gone (a reboot) starts it again (`starting`)
or records it `exited` with `lost` set; one that finds it `stopping` finishes the stop.

`stopped` means ended because somebody asked; `exited` ended by itself with an exit code;
`killed` ended by a signal nobody at ironrt sent; `failed` could not be started, or kept
crashing until the restart cap.
"""

from __future__ import annotations

from ironrt.protocol import AgentStatus as S

ENDED = frozenset({S.STOPPED, S.EXITED, S.FAILED, S.KILLED})

TRANSITIONS: dict[S, frozenset[S]] = {
    S.STARTING: frozenset(
        {S.RUNNING, S.STOPPING, S.STOPPED, S.EXITED, S.KILLED, S.FAILED, S.PAUSED}
    ),
    S.RUNNING: frozenset({S.STOPPING, S.EXITED, S.KILLED, S.FAILED, S.STARTING, S.PAUSED}),
    # A live status whose process is gone after a reboot may start again (resurrect).
    S.PAUSED: frozenset({S.RUNNING, S.STOPPING, S.EXITED, S.KILLED, S.FAILED, S.STARTING}),
    S.STOPPING: frozenset({S.STOPPED}),
    S.STOPPED: frozenset({S.STARTING}),
    # An agent waiting out its restart backoff may be stopped, or give up for good.
    S.EXITED: frozenset({S.STARTING, S.FAILED, S.STOPPED}),
    S.KILLED: frozenset({S.STARTING, S.FAILED, S.STOPPED}),
    S.FAILED: frozenset({S.STARTING}),
}


class IllegalTransition(RuntimeError):
    pass


def check(current: S, new: S) -> None:
    if new is not current and new not in TRANSITIONS[current]:
        raise IllegalTransition(f"an agent cannot go from {current.value} to {new.value}")
