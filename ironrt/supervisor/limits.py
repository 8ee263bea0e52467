"""The supervisor's side of limits: which ledger scopes an agent's calls must fit, the
limits an agent starts with, and limit changes made live and kept on disk.

The ledger owns limits, holds and window spend (see `ironrt.governance.ledger`); this
mixin only connects it to the supervisor's agents, store and events. It is part of
`Supervisor` (which supplies the attributes declared here), kept apart so that the
supervisor's module holds the agents' lives and nothing else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ironrt.errors import InvalidRequest, LedgerUnavailable
from ironrt.events import EventBus
from ironrt.governance.agent import AgentGovernance
from ironrt.governance.ledger import Ledger, Scope, scope_key
from ironrt.pii.entities import EntityError
from ironrt.policies.pii_rules import RulesFiles
from ironrt.protocol import Agent
from ironrt.protocol.events import LimitsChanged
from ironrt.store.books import Books
from ironrt.supervisor.budgets import resolve_scope, sorted_scopes
from ironrt.supervisor.lifecycle import Lifecycle
from ironrt.supervisor.managed import Managed

if TYPE_CHECKING:  # imported only by a daemon with IRONRT_LEDGER_URL: off the start path
    from ironrt.fleet.manager import FleetLedger


class SupervisorLimits:
    """Limits and scopes, as methods of `Supervisor`."""

    ledger: Ledger
    books: Books
    bus: EventBus
    #: The home's and agents' pii.toml: which PII type names a selection may use.
    pii_rules: RulesFiles
    life: Lifecycle
    agents: dict[str, Managed]
    #: The daemon's agent a ref names (`Supervisor.find`).
    find: Callable[[str], Managed]
    #: The fleet ledger, with `IRONRT_LEDGER_URL`: shared scopes' limits are the fleet's.
    fleet: FleetLedger | None

    def scopes_for(self, r: Agent) -> tuple[Scope, ...]:
        """The scopes an agent's calls must fit: its own, its project's, `global`."""
        ledger = self.ledger
        own = ledger.scope(scope_key("agent", r.id))
        if r.project:
            return (own, ledger.scope(scope_key("project", r.project)), ledger.scope("global"))
        return (own, ledger.scope("global"))

    def _limit_own(self, gov: AgentGovernance, r: Agent) -> Scope:
        """The limits an agent was started with, given to its own scope (their owner)."""
        own = gov.scopes[0]
        limits = {"budget_usd": r.budget_usd, "rpm": r.rpm, "tpm": r.tpm}
        own.apply({k: v for k, v in limits.items() if v is not None}, self.ledger.clock())
        return own

    def check_pii(self, types: Mapping[str, str] | None, pii_file: str | None) -> None:
        """A selection names only types this agent's detectors report; its file is valid."""
        if pii_file is not None and not Path(pii_file).is_file():
            raise InvalidRequest(f"`pii_file`: no such file: {pii_file}", field="pii_file")
        try:
            self.pii_rules.check_types(types, pii_file)
        except EntityError as exc:
            raise InvalidRequest(str(exc), field="pii_file") from None
        except ValueError as exc:
            raise InvalidRequest(str(exc), field="pii_types") from None

    def agent_of(self, scope: Scope) -> Managed | None:
        return self.agents.get(scope.agent_id) if scope.agent_id else None

    def resolve_scope(self, text: str) -> Scope:
        """`global`, `project:NAME`, `agent:REF` or a bare agent REF, as a ledger scope."""
        return resolve_scope(self.ledger, self.find, text)

    def all_scopes(self) -> list[Scope]:
        return sorted_scopes(self.ledger)

    async def set_limits(self, scope: Scope, changes: dict[str, object]) -> Scope:
        """Apply limit changes live (waiting and paused calls are re-evaluated at once) and
        persist them; an agent's row is rewritten to show its own scope's new limits."""
        types = changes.get("pii_types")
        if isinstance(types, dict):  # an agent's scope may name its own file's entities
            owner = self.agent_of(scope)
            self.check_pii(types, owner.gov.pii_file if owner is not None else None)
        before = scope.limits_state()
        self.ledger.set_limits(scope, changes)
        if self.fleet is not None and scope.lease is not None:
            try:  # the fleet's first: a limit only this daemon knew would not hold
                await self.fleet.put_limits(scope)
            except LedgerUnavailable:
                scope.restore_limits(before)
                raise
        if not await self.books.save_scope(scope):
            # Not on disk, so not at all: a limit must not vanish with the next restart.
            scope.restore_limits(before)
            raise sqlite3.OperationalError(f"could not save the limits of {scope.key}")
        m = self.agent_of(scope)
        if m is not None:
            await self.life.save(m)
        await self.bus.publish(
            LimitsChanged(
                agent_id=m.record.id if m is not None else None,
                scope=scope.key,
                changes={k: v for k, v in changes.items() if not isinstance(v, tuple)},
            )
        )
        return scope
