"""Budget scopes through `Runtime` and `AsyncRuntime`, against a real daemon: the two twins
must set, read, clear and remove the same limits the same way, and refuse bad input
before anything is sent."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from ironrt import AgentNotFound, AsyncRuntime, InvalidRequest, Runtime
from ironrt.protocol import ScopeLimits
from ironrt.tempdaemon import TempDaemon

FULL: dict[str, Any] = {
    "budget_usd": 5.0,
    "window": "1h",
    "rpm": 10,
    "tpm": 2000,
    "max_concurrent": 2,
    "models": ["gpt-4o*", "claude-*"],
}


def check_full(s: ScopeLimits, scope: str) -> None:
    assert s.scope == scope and s.spent_usd == 0.0 and s.held_usd == 0.0
    assert (s.budget_usd, s.window, s.rpm, s.tpm) == (5.0, "1h", 10, 2000)
    assert s.max_concurrent == 2 and s.models == ["gpt-4o*", "claude-*"]
    assert s.resets_at is not None


def check_empty(s: ScopeLimits) -> None:
    assert (s.budget_usd, s.window, s.resets_at, s.rpm, s.tpm) == (None,) * 5
    assert s.max_concurrent is None and s.models is None


def script(tmp_path: Path) -> str:
    path = tmp_path / "quiet.py"
    path.write_text("print('ok')\n")
    return str(path)


def test_runtime_limits_round_trip(daemon: TempDaemon, tmp_path: Path) -> None:
    rt = Runtime(home=daemon.home, autostart=False, project="alpha")
    scope = "project:alpha"
    check_full(rt.set_limits(scope, **FULL), scope)
    check_full(rt.get_limits(scope), scope)
    assert scope in {s.scope for s in rt.limits()} and "global" in {s.scope for s in rt.limits()}

    s = rt.unset_limits(scope, "window", "max_concurrent")
    assert s.window is None and s.max_concurrent is None and s.budget_usd == 5.0
    s = rt.set_limits(scope, rpm=None, models=("gpt-4o-mini",))  # None clears; tuples are lists
    assert s.rpm is None and s.models == ["gpt-4o-mini"] and s.tpm == 2000
    check_empty(rt.remove_limits(scope))
    check_empty(rt.get_limits(scope))

    # The client's default project, and a per-call one; `pause` is accepted.
    first = rt.start_agent(script(tmp_path), name="in-alpha", on_budget="pause")
    assert rt.get_agent(first).project == "alpha"
    assert rt.get_agent(first).on_budget == "pause"
    other = rt.start_agent(script(tmp_path), name="in-beta", project="beta")
    assert rt.get_agent(other).project == "beta"
    assert Runtime(home=daemon.home, autostart=False).get_agent(other).project == "beta"

    # Agent scopes, by name and by `agent:REF`; `set_budget` stays.
    assert rt.set_limits("in-alpha", rpm=3).scope == f"agent:{first}"
    assert rt.get_limits(f"agent:{first}").rpm == 3
    rt.set_budget("in-alpha", 2.5)
    assert rt.get_limits("in-alpha").budget_usd == 2.5


def test_runtime_refuses_bad_limits(daemon: TempDaemon) -> None:
    rt = Runtime(home=daemon.home, autostart=False)
    bad: list[dict[str, Any]] = [
        {"window": "5x"},
        {"budget_usd": -1.0},
        {"rpm": 0},
        {"rpm": "10"},
        {"models": "gpt-4o*"},  # a string is not a list of patterns
        {"models": []},
        {},  # nothing to set
    ]
    for changes in bad:
        with pytest.raises(InvalidRequest):
            rt.set_limits("global", **changes)
    with pytest.raises(InvalidRequest, match="tokens"):
        rt.unset_limits("global", "tokens")
    with pytest.raises(InvalidRequest):
        rt.get_limits("")
    with pytest.raises(InvalidRequest):
        Runtime(home=daemon.home, project="not a project!")
    with pytest.raises(AgentNotFound):
        rt.set_limits("no-such-agent", rpm=5)
    with pytest.raises(AgentNotFound):
        rt.get_limits("agent:no-such-agent")
    with pytest.raises(InvalidRequest):  # refused by the daemon: a malformed scope
        rt.set_limits("project:not a name!", rpm=5)
    check_empty(rt.get_limits("global"))


def test_bad_limits_are_refused_before_sending() -> None:
    """With no daemon at all, bad input is still InvalidRequest, not DaemonUnavailable."""
    with tempfile.TemporaryDirectory(prefix="irt-", dir="/tmp") as home:
        rt = Runtime(home=home, autostart=False)
        with pytest.raises(InvalidRequest):
            rt.set_limits("global", window="5x")
        with pytest.raises(InvalidRequest):
            rt.unset_limits("global", "budget")  # the field is `budget_usd`


async def test_async_runtime_limits_round_trip(daemon: TempDaemon, tmp_path: Path) -> None:
    async with AsyncRuntime(home=daemon.home, autostart=False, project="alpha") as rt:
        scope = "project:alpha"
        check_full(await rt.set_limits(scope, **FULL), scope)
        check_full(await rt.get_limits(scope), scope)
        assert scope in {s.scope for s in await rt.limits()}
        s = await rt.unset_limits(scope, "window", "max_concurrent")
        assert s.window is None and s.max_concurrent is None and s.budget_usd == 5.0
        s = await rt.set_limits(scope, rpm=None)
        assert s.rpm is None and s.tpm == 2000
        check_empty(await rt.remove_limits(scope))

        agent_id = await rt.start_agent(script(tmp_path), name="async-alpha", on_budget="pause")
        agent = await rt.get_agent(agent_id)
        assert agent.project == "alpha" and agent.on_budget == "pause"
        other = await rt.start_agent(script(tmp_path), project="beta")
        assert (await rt.get_agent(other)).project == "beta"
        assert (await rt.set_limits("async-alpha", tpm=100)).scope == f"agent:{agent_id}"
        await rt.set_budget("async-alpha", 1.5)
        assert (await rt.get_limits(f"agent:{agent_id}")).budget_usd == 1.5

        with pytest.raises(InvalidRequest):
            await rt.set_limits("global", window="5x")
        with pytest.raises(InvalidRequest):
            await rt.unset_limits("global", "tokens")
        with pytest.raises(InvalidRequest):
            await rt.set_limits("global")
        with pytest.raises(AgentNotFound):
            await rt.remove_limits("no-such-agent")
        with pytest.raises(InvalidRequest):
            await rt.update_agent(agent_id, rpm=0)
