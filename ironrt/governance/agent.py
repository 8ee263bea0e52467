"""What the router knows about one agent while it governs its calls.

The daemon keeps one `AgentGovernance` per agent that may call the router (live agents,
and agents reattached after a restart); the supervisor's token map (hash of the IC_TOKEN
-> governance) finds it, and an agent whose hash is not in that map cannot call at all.
Library mode keeps one per open `ironrt.protect` scope.
Policies read their settings from it and keep their per-agent state on it (the rate
limiter's buckets, the PII counters). It is plain memory: the router persists what must
survive a crash (settled spend, traces) after each call, outside the policies.

Each fact has one owner here. Limits (budget, rpm, tpm), holds and the spend of the
current window belong to the ledger's scopes (`scopes`, the agent's own first); the
settings below are changed in place when someone changes them; the supervisor's `Agent`
answers are built from both when asked, never copied back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ironrt.governance.ledger.scope import Scope
from ironrt.protocol import OnBudget, PiiMode


@dataclass(slots=True)
class AgentGovernance:
    agent_id: str
    #: Who the agent is, for the records of its calls (traces, metrics, spans): its name,
    #: project and the pid of its current process (None between runs).
    name: str = ""
    project: str | None = None
    pid: int | None = None
    #: Settled spend of all time, committed to the store after each call (the budget
    #: scopes keep the spend of their windows).
    spent_usd: float = 0.0
    #: The budget scopes every call of the agent must fit: its own (`agent:ID`) first,
    #: then its project's, then `global`.
    scopes: tuple[Scope, ...] = ()
    on_budget: OnBudget = "block"
    pii: PiiMode = "detect"
    #: Per type (`{"EMAIL": "redact", "*": "off"}`); None: every type follows `pii`.
    pii_types: dict[str, PiiMode] | None = None
    #: The agent's own pii.toml (absolute path), its entities added to the home's.
    pii_file: str | None = None
    allow_unmetered: bool = False
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    pii_findings: int = 0
    errors: int = 0
    #: Per-policy state that lives as long as the agent (rate-limit buckets, ...).
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def own(self) -> Scope | None:
        """The agent's own scope (`agent:ID`)."""
        return self.scopes[0] if self.scopes else None
