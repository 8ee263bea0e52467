"""The supervisor's sampling loop: CPU and memory of every live agent's process tree, one
walk over /proc per interval (`sampler`), each sample handed to the memory guard.

Samples are kept on each agent (`Managed.sample`), where metrics read them: a metrics call
never walks /proc itself, so asking often costs nothing.
"""

from __future__ import annotations

import anyio

from ironrt.supervisor.managed import Managed
from ironrt.supervisor.memory import MemoryGuard
from ironrt.supervisor.sampler import TreeSampler


async def sample_forever(agents: dict[str, Managed], guard: MemoryGuard, interval: float) -> None:
    """Sample the live agents of `agents` every `interval` seconds, until cancelled."""
    sampler = TreeSampler()
    while True:
        roots: dict[str, tuple[int, float | None]] = {
            m.record.id: (m.record.pid, m.stored.pid_started)
            for m in agents.values()
            if m.record.status.live and m.record.pid is not None
        }
        if roots:
            samples = await anyio.to_thread.run_sync(sampler.sample, roots)
            for agent_id, sample in samples.items():
                m = agents.get(agent_id)
                if m is not None:
                    m.sample = sample
                    guard.check(m, roots[agent_id][0], sample.rss_bytes)
        await anyio.sleep(interval)
