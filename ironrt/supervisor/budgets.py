"""Budget scopes as people name them, and budget pauses as the OS carries them out.

`--on-budget pause` is decided in the ledger (a call that cannot be paid for is parked
instead of refused); here the agent's process tree is SIGSTOPped when its first call
parks and SIGCONTed when its last one leaves, in the order the ledger asked, with the
status (`paused`), the stop reason and the events to match.
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Awaitable, Callable

import anyio

from ironrt.errors import InvalidRequest
from ironrt.events import EventBus
from ironrt.governance.ledger import Ledger, Scope, scope_key
from ironrt.protocol import AgentStatus
from ironrt.protocol.events import AgentPaused, AgentResumed, BudgetExhausted
from ironrt.supervisor import process
from ironrt.supervisor.managed import Managed
from ironrt.values import check_project

log = logging.getLogger("ironrt.supervisor")
S = AgentStatus
_ORDER = {"global": 0, "project": 1, "agent": 2}


def resolve_scope(ledger: Ledger, find: Callable[[str], Managed], text: str) -> Scope:
    """`global`, `project:NAME`, `agent:REF` or a bare agent REF, as a ledger scope
    (`InvalidRequest` for anything else, `AgentNotFound` from `find`)."""
    if text == "global":
        return ledger.scope("global")
    kind, sep, name = text.partition(":")
    if sep and kind == "project":
        try:
            check_project(name)
        except ValueError as exc:
            raise InvalidRequest(str(exc), field="scope") from None
        return ledger.scope(scope_key("project", name))
    if sep and kind != "agent":
        raise InvalidRequest(
            f"invalid scope {text!r}: use global, project:NAME or an agent (agent:REF)",
            field="scope",
        )
    m = find(name if sep else text)
    return m.gov.scopes[0] if m.gov.scopes else ledger.scope(scope_key("agent", m.record.id))


def sorted_scopes(ledger: Ledger) -> list[Scope]:
    """`global` first, then projects, then agents."""
    return sorted(
        ledger.scopes.values(), key=lambda s: (_ORDER.get(s.key.partition(":")[0], 3), s.key)
    )


class BudgetPauses:
    def __init__(
        self,
        ledger: Ledger,
        bus: EventBus,
        agents: dict[str, Managed],
        set_status: Callable[[Managed, AgentStatus], Awaitable[None]],
    ) -> None:
        self.ledger = ledger
        self.bus = bus
        self.agents = agents
        self.set_status = set_status
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, str, bool]](
            math.inf
        )
        ledger.on_pause = self._on_pause
        ledger.on_resume = self._on_resume

    def _on_pause(self, agent_id: str, scope: Scope) -> None:
        self._send.send_nowait((agent_id, scope.key, True))

    def _on_resume(self, agent_id: str) -> None:
        self._send.send_nowait((agent_id, "", False))

    async def run(self) -> None:
        """SIGSTOP / SIGCONT agents as the ledger parks and releases their calls, in order."""
        async with self._receive:
            async for agent_id, key, pause in self._receive:
                m = self.agents.get(agent_id)
                if m is None or m.record.pid is None:
                    continue
                try:
                    if pause:
                        await self._pause(m, key)
                    else:
                        await self._resume(m)
                except Exception:
                    log.exception("could not %s agent %s", "pause" if pause else "resume", agent_id)

    async def _pause(self, m: Managed, key: str) -> None:
        r = m.record
        if r.pid is None or r.status not in (S.RUNNING, S.STARTING):
            return
        process.signal_tree(process.tree(r.pid, m.stored.pid_started), signal.SIGSTOP)
        r.stop_reason = "budget"
        await self.set_status(m, S.PAUSED)
        scope = self.ledger.scopes.get(key)
        if scope is not None and not scope.exhausted:
            scope.exhausted = True  # announced once a window
            await self.bus.publish(
                BudgetExhausted(
                    agent_id=r.id, paused=True, threshold_percent=100, **scope.describe()
                )
            )
        await self.bus.publish(AgentPaused(agent_id=r.id, scope=key, reason="budget"))

    async def _resume(self, m: Managed) -> None:
        r = m.record
        if r.pid is None or r.status is not S.PAUSED:
            return
        process.signal_tree(process.tree(r.pid, m.stored.pid_started), signal.SIGCONT)
        r.stop_reason = None
        await self.set_status(m, S.RUNNING)
        await self.bus.publish(AgentResumed(agent_id=r.id))
