"""One supervised agent as the supervisor holds it: its record, its governance, and the
events its tasks wait on."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

import anyio

from ironrt.governance.agent import AgentGovernance
from ironrt.protocol import Agent
from ironrt.store.agents import StoredAgent
from ironrt.supervisor.sampler import TreeSample

_EMPTY_SAMPLE = TreeSample(0.0, 0, 0)


@dataclass(slots=True, eq=False)
class Managed:
    stored: StoredAgent
    gov: AgentGovernance
    popen: subprocess.Popen[bytes] | None = None
    stop_requested: bool = False
    #: Ended, but the restart policy will start it again: not finished for `wait`.
    restart_pending: bool = False
    wake: anyio.Event = field(default_factory=anyio.Event)
    changed: anyio.Event = field(default_factory=anyio.Event)
    #: Serialises start, stop, restart, remove and update of this agent, and a restart by
    #: policy; `restart_pending` is handed over under it (an operation that takes over an
    #: agent waiting out its backoff clears it, and the watcher then stands down).
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    #: Removed: operations that waited for the lock find nothing, saves write nothing.
    removed: bool = False
    started_mono: float = 0.0
    #: This run is being ended for exceeding `max_memory_bytes`: its watcher restarts it
    #: whatever the policy (see `memory`). Cleared when the run ends and at each spawn.
    over_memory: bool = False
    sample: TreeSample = _EMPTY_SAMPLE

    @property
    def record(self) -> Agent:
        return self.stored.record
