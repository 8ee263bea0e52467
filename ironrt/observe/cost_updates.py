"""`CostUpdate` events: each spending agent's spend, coalesced.

A call observer (`RouterService.observers`) only adds a settled call to its agent's
pending tally (no I/O, no await: it runs on the call's path); a task publishes one
`CostUpdate` per agent that made calls since the last tick, every `interval_s`. So a
busy agent makes one event every few seconds, never one per call, and an idle one none.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from ironrt.events import EventBus
from ironrt.governance.agent import AgentGovernance
from ironrt.governance.flow import Flow
from ironrt.protocol import CostUpdate, Trace

#: Seconds between two CostUpdates of one agent (at most).
INTERVAL_S = 2.0


@dataclass(slots=True)
class _Tally:
    gov: AgentGovernance
    calls: int = 0
    cost_usd: float = 0.0


class CostUpdates:
    def __init__(self, bus: EventBus, interval_s: float = INTERVAL_S) -> None:
        self.bus = bus
        self.interval_s = interval_s
        self._pending: dict[str, _Tally] = {}

    def observe(self, trace: Trace, flow: Flow) -> None:
        tally = self._pending.get(trace.agent_id)
        if tally is None:
            tally = self._pending[trace.agent_id] = _Tally(flow.agent)
        tally.calls += 1
        tally.cost_usd += trace.cost_usd or 0.0

    async def flush(self) -> None:
        """Publish what is pending (one event per agent) and start new tallies."""
        pending, self._pending = self._pending, {}
        for agent_id, tally in pending.items():
            gov = tally.gov
            await self.bus.publish(
                CostUpdate(
                    agent_id=agent_id,
                    agent_name=gov.name or None,
                    project=gov.project,
                    spent_usd=round(gov.spent_usd, 9),
                    llm_calls=gov.llm_calls,
                    calls=tally.calls,
                    cost_usd=round(tally.cost_usd, 9),
                )
            )

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval_s)
            await self.flush()
