"""Taking up every agent where the last daemon left it, whatever it was doing then.

A daemon may die at any moment (SIGKILL, a reboot). What the next one finds, per agent:
alive: reattached (a stop under way is finished); gone while it should run: started again
under the same id, spec, budget and spend if its policy restarts it (a reboot), else
`exited` with `lost` (its exit status went to a parent that is gone); ended while waiting
out a restart backoff: restarted now.

Only the daemon's own agents come here: library-mode records are never loaded (see
`library`, which only marks those whose process died as ended).
"""

from __future__ import annotations

import signal
import time

import anyio

from ironrt.errors import StartFailed
from ironrt.events import utcnow
from ironrt.protocol import AgentStatus
from ironrt.protocol.events import (
    AgentExited,
    AgentFailed,
    AgentReattached,
    AgentResurrected,
    AgentStopped,
)
from ironrt.supervisor import process
from ironrt.supervisor.lifecycle import Lifecycle
from ironrt.supervisor.managed import Managed
from ironrt.supervisor.restart import pending

S = AgentStatus


async def recover(life: Lifecycle, m: Managed) -> None:
    """Take up an agent where the last daemon left it, whatever it was doing then.

    Alive: reattach (and finish a stop that was under way). Gone while it should run:
    started again under the same id if its policy restarts it (a reboot, a killed
    process group), else `exited` with `lost`. Ended while waiting out a restart
    backoff: restarted now.
    """
    r = m.record
    if not r.status.live:
        if r.status in (S.EXITED, S.KILLED) and pending(r):
            await _resurrect(life, m, "restart_interrupted")
        return
    if r.pid is not None and process.is_same_process(r.pid, m.stored.pid_started):
        await _reattach(life, m)
        return
    r.ended_at = utcnow()
    r.exit_code = r.signal = None
    life.revoke(m)
    if r.status is S.STOPPING:  # it was being stopped, and it did
        await life.set(m, S.STOPPED)
        await life.bus.publish(AgentStopped(agent_id=r.id, while_daemon_down=True))
        return
    if r.restart != "no":  # always, or on-failure: an unknowable exit is a failure
        await _resurrect(life, m, "process_gone")
        return
    r.lost = True
    await life.set(m, S.EXITED)
    await life.bus.publish(AgentExited(agent_id=r.id, while_daemon_down=True, lost=True))


async def _reattach(life: Lifecycle, m: Managed) -> None:
    r = m.record
    assert r.pid is not None
    if m.stored.token_hash:
        life.by_token[m.stored.token_hash] = m.gov
    m.started_mono = time.monotonic() - max(time.time() - (m.stored.pid_started or 0), 0)
    if r.status is S.STARTING:
        await life.set(m, S.RUNNING)
    if r.status is S.PAUSED:
        # The call that paused it died with the last daemon: let it run again.
        process.signal_tree(process.tree(r.pid, m.stored.pid_started), signal.SIGCONT)
        r.stop_reason = None
        await life.set(m, S.RUNNING)
    await life.bus.publish(AgentReattached(agent_id=r.id, pid=r.pid))
    life.watch(m)
    if r.status is S.STOPPING:  # the last daemon died during the grace period
        m.stop_requested = True
        assert life.tg is not None
        life.tg.start_soon(_finish_stop, life, m)


async def _finish_stop(life: Lifecycle, m: Managed) -> None:
    async with m.lock:
        if m.record.status is S.STOPPING:
            await life.kill(m, 10.0)


async def _resurrect(life: Lifecycle, m: Managed, why: str) -> None:
    """Start an agent again under its id, spec, budget and spend (counted as a restart)."""
    r = m.record
    async with m.lock:
        # A descendant that escaped its group may have outlived it: it is not recorded.
        left = await anyio.to_thread.run_sync(process.escaped, r.id, m.stored.pid_started)
        await process.kill_tree(left, 2.0)
        r.lost = False
        try:
            await life.spawn(m, restart=True)
        except StartFailed as exc:
            r.error = exc.message
            await life.set(m, S.FAILED)
            await life.bus.publish(AgentFailed(agent_id=r.id, reason=exc.message))
            return
        await life.bus.publish(AgentResurrected(agent_id=r.id, pid=r.pid, reason=why))
        life.watch(m)
