"""AsyncRuntime, the anyio twin of Runtime, against a real daemon."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import pytest

from ironrt import AgentNotFound, AsyncRuntime, DaemonUnavailable, Runtime
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


async def test_followed_streams_carry_live_events_and_errors(daemon: TempDaemon) -> None:
    """A followed stream yields what happens after it opened, and a stream the daemon
    refuses raises its error (as the sync twin's does) instead of yielding nothing."""
    async with AsyncRuntime(home=daemon.home, autostart=False) as rt:
        last = max((e.id for e in [e async for e in rt.events(limit=10_000)]), default=0)
        stream = rt.events(since=last, follow=True)
        with anyio.fail_after(30):
            # The request goes out on the first `anext`, so the agent most likely starts
            # after it opened (live); were it earlier, the backlog after `since` has it.
            async with anyio.create_task_group() as tg:

                async def start_soon() -> None:
                    await anyio.sleep(0.3)
                    await rt.start_agent(["sleep", "30"], name="live")

                tg.start_soon(start_soon)
                event = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        assert event.kind == "AgentStarted" and event.id > last
        assert event.agent_id == (await rt.get_agent("live")).id

        with pytest.raises(AgentNotFound):
            [chunk async for chunk in rt.follow_logs("nope-nope")]
        with pytest.raises(AgentNotFound):
            [e async for e in rt.events(agent="nope-nope", follow=True)]
    with pytest.raises(AgentNotFound):
        list(Runtime(home=daemon.home, autostart=False).follow_logs("nope-nope"))


async def test_no_daemon_and_no_autostart() -> None:
    with tempfile.TemporaryDirectory(prefix="irt-", dir="/tmp") as home:
        async with AsyncRuntime(home=home, autostart=False) as rt:
            assert not await rt.ping()
            with pytest.raises(DaemonUnavailable, match="no ironrt daemon is running"):
                await rt.health()
            with pytest.raises(DaemonUnavailable):
                [e async for e in rt.events(follow=True)]
            with pytest.raises(DaemonUnavailable):
                await rt.shutdown_daemon()
