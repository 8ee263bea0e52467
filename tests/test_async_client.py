"""AsyncRuntime, the anyio twin of Runtime, against a real daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironrt import AgentNotFound, AsyncRuntime
from ironrt.tempdaemon import TempDaemon


async def test_async_runtime_drives_the_daemon(daemon: TempDaemon, tmp_path: Path) -> None:
    script = tmp_path / "hi.py"
    script.write_text("print('hello from an async-started agent')\n")
    async with AsyncRuntime(budget=2.0, home=daemon.home, autostart=False) as rt:
        agent_id = await rt.start_agent(str(script), name="async-hi")
        final = await rt.wait(agent_id, timeout=30)
        assert final.exit_code == 0 and final.budget_usd == 2.0
        assert "hello from an async-started agent" in await rt.logs(agent_id)
        assert [a.id for a in await rt.list_agents()] == [agent_id]
        assert (await rt.get_metrics("async-hi")).id == agent_id
        kinds = [e.kind async for e in rt.events(agent=agent_id)]
        assert kinds[0] == "AgentStarted" and "AgentExited" in kinds
        assert (await rt.health()).ok
        with pytest.raises(AgentNotFound):
            await rt.get_agent("nope-nope")
        removed = await rt.remove_agent(agent_id)
        assert removed.id == agent_id
