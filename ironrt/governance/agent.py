"""What the router knows about one agent while it governs its calls.

The daemon keeps one `AgentGovernance` per agent that may call the router (live agents,
and agents reattached after a restart), keyed by the hash of its IC_TOKEN. Policies read
their settings from it and keep their per-agent state on it (the budget ledger, the rate
limiter's buckets, the PII counters). It is plain memory: the router persists what must
survive a crash (settled spend, traces) after each call, outside the policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ironrt.governance.ledger.scope import Scope
from ironrt.protocol import OnBudget, PiiMode


@dataclass(slots=True)
class AgentGovernance:
    agent_id: str
    #: Settled spend of all time, committed to the store after each call (the budget
    #: scopes keep the spend of their windows).
    spent_usd: float = 0.0
    #: The budget scopes every call of the agent must fit: its own (`agent:ID`) first,
    #: then its project's, then `global`.
    scopes: tuple[Scope, ...] = ()
    on_budget: OnBudget = "block"
    pii: PiiMode = "detect"
    allow_unmetered: bool = False
    #: False once the agent stopped: its token no longer opens the router.
    active: bool = True
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
