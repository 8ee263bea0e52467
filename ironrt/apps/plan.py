"""What `up` and `down` do for one entry, decided from the daemon's records of its name.

The decision (leave alone, start, start again, replace, stop) is plain data, made here
without a daemon: `--dry-run` prints it as it is, a real run carries it out and fills in
the agent that then runs. See docs/apps.md for the cases.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:
    from ironrt.apps.schema import App
    from ironrt.protocol import Agent

__all__ = ["Action", "Outcome", "UpPlan", "by_name", "is_live", "plan_down", "plan_up"]

Action = Literal["started", "up_to_date", "restarted", "stopped", "not_running", "failed"]


class Outcome(msgspec.Struct, kw_only=True):
    """What `up` or `down` did (or, with --dry-run, would do) for one entry."""

    name: str
    action: Action
    #: The agent now under that name (null if none, or not yet under --dry-run).
    id: str | None = None
    pid: int | None = None
    spec_digest: str | None = None
    #: The agent this one replaced (`restarted`), or that was started again (`started`).
    previous_id: str | None = None
    #: Why: "spec changed", "not started from an apps file", "was exited" ...
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class UpPlan:
    """What `up` does for one entry, in this order: stop and remove `replace`, remove
    `remove`, then start `reuse` again under its id, or else start the entry anew. Every
    agent is named by id, never by name: the name is what is being decided."""

    #: What will be reported; its `id` and `pid` are filled in once the agent runs.
    outcome: Outcome
    #: The live agent of the name, whose spec is not the entry's.
    replace: Agent | None = None
    #: Ended records of the name, removed so that the name keeps naming one agent.
    remove: tuple[Agent, ...] = ()
    #: An ended agent started from this very spec: started again, its logs, spend and
    #: restart count go on.
    reuse: Agent | None = None

    @property
    def up_to_date(self) -> bool:
        """The entry runs with its spec: nothing to do."""
        return self.outcome.action == "up_to_date"


def is_live(agent: Agent) -> bool:
    """Running, or about to run again (an ended agent whose policy restarts it)."""
    return agent.status.live or agent.restarting


def by_name(agents: Iterable[Agent], names: Iterable[str]) -> dict[str, list[Agent]]:
    """The records of each of `names` (an empty list for a name no agent has). Only the
    daemon's own agents: a library-mode record (an `ironrt.protect` scope of another
    process) that happens to bear an entry's name is not the entry's agent, and is never
    stopped, replaced or removed by `up` or `down`."""
    wanted: dict[str, list[Agent]] = {name: [] for name in names}
    for agent in agents:
        if agent.kind == "process" and agent.name in wanted:
            wanted[agent.name].append(agent)
    return wanted


def plan_up(entry: App, records: list[Agent]) -> UpPlan:
    """Make one entry run with its spec, given the records of its name."""
    live = next((a for a in records if is_live(a)), None)
    ended = [a for a in records if not is_live(a)]
    if live is not None and live.spec_digest == entry.digest:
        return UpPlan(
            Outcome(
                name=entry.name,
                action="up_to_date",
                id=live.id,
                pid=live.pid,
                spec_digest=entry.digest,
            )
        )
    if live is not None:
        # Replaced: stopped, removed, and started anew under the same name.
        replaced = Outcome(
            name=entry.name,
            action="restarted",
            spec_digest=entry.digest,
            previous_id=live.id,
            reason="spec changed" if live.spec_digest else "not started from an apps file",
        )
        return UpPlan(replaced, replace=live, remove=tuple(ended))
    # An ended agent started from this very spec is started again under its id; other
    # records of the name are removed, so that the name keeps naming one agent.
    same = [a for a in ended if a.spec_digest == entry.digest]
    reuse = max(same, key=lambda a: a.created_at, default=None)
    started = Outcome(name=entry.name, action="started", spec_digest=entry.digest)
    if reuse is not None:
        started.id = started.previous_id = reuse.id
        started.reason = f"was {reuse.status.value}"
    return UpPlan(started, remove=tuple(a for a in ended if a is not reuse), reuse=reuse)


def plan_down(name: str, records: list[Agent]) -> Outcome:
    """Stop the live agent of the name, if any: `id` is the agent to stop."""
    live = next((a for a in records if is_live(a)), None)
    if live is None:
        return Outcome(name=name, action="not_running")
    return Outcome(name=name, action="stopped", id=live.id, spec_digest=live.spec_digest)
