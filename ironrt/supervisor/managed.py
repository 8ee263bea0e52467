"""One supervised agent as the supervisor holds it: its record, its governance, and the
events its tasks wait on.

Each fact about the agent has one owner. `record` owns the spec and the lifecycle (status,
pid, exit, restarts); `gov` owns the settings the router reads (pii, on_budget,
allow_unmetered) and the spend of all time; the ledger scope `gov.own` owns the limits
(budget, rpm, tpm), holds and the window's spend. The record's own copies of those fields
are what the agent was started or loaded with and are never read again: every `Agent`
answer and every row written is built by `snapshot()` from the owners.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec

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
        """The spec and lifecycle (see the module docstring for what it does not own)."""
        return self.stored.record

    def snapshot(self, **changes: Any) -> Agent:
        """The agent as it is now, from each fact's owner (`changes`: settings about to be
        applied, for the row that must reach the disk first)."""
        gov, own = self.gov, self.gov.own
        now: dict[str, Any] = {
            "spent_usd": round(gov.spent_usd, 9),
            "on_budget": gov.on_budget,
            "pii": gov.pii,
            "pii_types": gov.pii_types,
            "allow_unmetered": gov.allow_unmetered,
            "restarting": self.restart_pending,
        }
        if own is not None:
            now.update(budget_usd=own.budget_usd, rpm=own.rpm, tpm=own.tpm)
        now.update(changes)
        return msgspec.structs.replace(self.stored.record, **now)

    def row(self, **changes: Any) -> StoredAgent:
        """What the store keeps of the agent now (see `snapshot`)."""
        s = self.stored
        return StoredAgent(self.snapshot(**changes), s.env, s.pid_started, s.token_hash)


def govern(gov: AgentGovernance, record: Agent) -> AgentGovernance:
    """Give a new agent's (or a just loaded agent's) governance the settings and spend of
    its record: once, when the governance is built. Later changes go to `gov` alone."""
    gov.name = record.name
    gov.project = record.project
    gov.pid = record.pid
    gov.on_budget = record.on_budget
    gov.pii = record.pii
    gov.pii_types = record.pii_types
    gov.pii_file = record.pii_file
    gov.allow_unmetered = record.allow_unmetered
    gov.spent_usd = record.spent_usd
    return gov
