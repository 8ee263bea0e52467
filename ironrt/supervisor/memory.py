"""PM2's `max_memory_restart`: an agent whose process tree's RSS exceeds its
`max_memory_bytes` is ended and started again.

The check rides on the supervisor's sampling of every tree (one /proc walk per
`IRONRT_SAMPLE_INTERVAL`, no extra one), so a tree may stay over its limit for up to one
interval before it is noticed, and a peak between two samples is not seen at all.

The restart takes the agent's one restart path, never a second one: under the agent's
lock (so it never interleaves with a stop, restart, remove or another restart), the run is
marked `over_memory` and its tree is stopped as `stop` stops one (SIGTERM, a grace,
SIGKILL); the agent's watcher, the only task that records how a run ended, then records
it and restarts it whatever the policy, with the policy's backoff and cap
(`restart.decide`). A stop asked meanwhile wins: the agent ends `stopped`.
"""

from __future__ import annotations

import logging

import anyio

from ironrt.protocol import AgentStatus
from ironrt.protocol.events import AgentForceKilled, AgentMemoryExceeded
from ironrt.supervisor import process
from ironrt.supervisor.lifecycle import Lifecycle
from ironrt.supervisor.managed import Managed

log = logging.getLogger("ironrt.supervisor")
S = AgentStatus
#: SIGTERM to SIGKILL, as `ironrt stop`'s default.
GRACE_S = 10.0
_RUNNING = frozenset({S.STARTING, S.RUNNING, S.PAUSED})


class MemoryGuard:
    def __init__(self, life: Lifecycle, grace: float = GRACE_S) -> None:
        self.life = life
        self.grace = grace
        #: Agents whose memory restart is under way: one at a time, whatever the samples say.
        self._busy: set[str] = set()

    def check(self, m: Managed, pid: int, rss_bytes: int) -> None:
        """Look at a fresh sample of the tree rooted at `pid`: over the limit, restart."""
        r = m.record
        limit = r.max_memory_bytes
        if limit is None or rss_bytes <= limit or r.id in self._busy:
            return
        if m.over_memory or m.stop_requested or r.pid != pid or r.status not in _RUNNING:
            return
        self._busy.add(r.id)
        assert self.life.tg is not None
        self.life.tg.start_soon(self._restart, m, pid, rss_bytes, limit)

    async def _restart(self, m: Managed, pid: int, rss_bytes: int, limit: int) -> None:
        """Nothing one agent does may end the daemon: an error is logged, never raised."""
        r = m.record
        try:
            await self._end_run(m, pid, rss_bytes, limit)
        except Exception:
            log.exception("restarting agent %s for its memory failed", r.id)
        finally:
            self._busy.discard(r.id)

    async def _end_run(self, m: Managed, pid: int, rss_bytes: int, limit: int) -> None:
        r = m.record
        async with m.lock:
            # Waited for the lock: the run sampled may be over (stopped, restarted).
            if m.removed or m.stop_requested or r.pid != pid or r.status not in _RUNNING:
                return
            m.over_memory = True
            await self.life.bus.publish(
                AgentMemoryExceeded(
                    agent_id=r.id, pid=pid, rss_bytes=rss_bytes, max_memory_bytes=limit
                )
            )
            started = m.stored.pid_started
            procs = await anyio.to_thread.run_sync(process.tree, pid, started, r.id)
            if await process.kill_tree(procs, grace=self.grace):
                await self.life.bus.publish(AgentForceKilled(agent_id=r.id, grace_s=self.grace))
            # Held until the watcher has recorded the end (bounded, as `kill` is): an
            # operation waiting for the lock then finds the run over.
            with anyio.move_on_after(10):
                while r.pid == pid and r.status in _RUNNING:
                    await m.changed.wait()
