"""`Runtime` and `AsyncRuntime` are twins: the same public methods with the same
parameters and results (awaited in the async one), the same requests, the same answers.

The comparison is by introspection, so a method added to one client only, or a parameter
that drifts, fails here rather than in a user's port from one twin to the other. The
daemon tests then drive every call the async twin gained through a real daemon next to
the sync twin, and check both refuse an unknown keyword before anything is sent.
"""

from __future__ import annotations

import collections.abc
import inspect
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

import anyio
import msgspec
import pytest

from ironrt import AsyncRuntime, DaemonUnavailable, InvalidRequest, Runtime, WaitTimeout
from ironrt.client_requests import START_OPTIONS, start_body
from ironrt.protocol import Agent
from ironrt.tempdaemon import TempDaemon

#: Public methods one twin has and the other has not, each with its reason.
ASYNC_ONLY = {
    "aclose": "the name `contextlib.aclosing` and anyio's resources call; `close` is shared",
}
SYNC_ONLY: dict[str, str] = {}


def public_methods(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


def sync_form(annotation: object) -> object:
    """What an async twin's annotation is in the sync twin: `AsyncIterator[X]` is
    `Iterator[X]`, the rest is the same."""
    if get_origin(annotation) is collections.abc.AsyncIterator:
        return Iterator[get_args(annotation)[0]]  # type: ignore[misc]
    return annotation


def parameters(sig: inspect.Signature) -> list[tuple[str, object, object, object]]:
    return [(p.name, p.kind, p.default, p.annotation) for p in sig.parameters.values()]


def twin_differences(sync_cls: type, async_cls: type) -> list[str]:
    """Every way `async_cls` is not the awaited twin of `sync_cls` (empty: none)."""
    sync_names = public_methods(sync_cls) - set(SYNC_ONLY)
    async_names = public_methods(async_cls) - set(ASYNC_ONLY)
    problems = [f"{n}: only in {sync_cls.__name__}" for n in sorted(sync_names - async_names)]
    problems += [f"{n}: only in {async_cls.__name__}" for n in sorted(async_names - sync_names)]
    for name in ["__init__", *sorted(sync_names & async_names)]:
        sync_fn, async_fn = getattr(sync_cls, name), getattr(async_cls, name)
        sync_sig = inspect.signature(sync_fn, eval_str=True)
        async_sig = inspect.signature(async_fn, eval_str=True)
        if parameters(sync_sig) != parameters(async_sig):
            problems.append(f"{name}: parameters {sync_sig} != {async_sig}")
        if name == "__init__":
            continue
        returns = sync_form(async_sig.return_annotation)
        if sync_sig.return_annotation != returns:
            problems.append(f"{name}: returns {sync_sig.return_annotation} != {returns}")
        if inspect.iscoroutinefunction(sync_fn) or inspect.isasyncgenfunction(sync_fn):
            problems.append(f"{name}: async in {sync_cls.__name__}")
        elif inspect.isgeneratorfunction(sync_fn):
            if not inspect.isasyncgenfunction(async_fn):
                problems.append(f"{name}: a generator, but not an async one in the twin")
        elif not inspect.iscoroutinefunction(async_fn):
            problems.append(f"{name}: not an `async def` in {async_cls.__name__}")
    return problems


def test_the_clients_are_twins() -> None:
    assert twin_differences(Runtime, AsyncRuntime) == []
    # The exceptions are real: each names a method of its twin only.
    assert set(ASYNC_ONLY) <= public_methods(AsyncRuntime) - public_methods(Runtime)
    assert set(SYNC_ONLY) <= public_methods(Runtime) - public_methods(AsyncRuntime)
    # Each is its own kind of context manager.
    assert {"__enter__", "__exit__"} <= set(vars(Runtime))
    assert {"__aenter__", "__aexit__"} <= set(vars(AsyncRuntime))


def test_the_twin_check_catches_drift() -> None:
    """The check itself: a method on one side only, a changed default, a changed result,
    and a sync generator turned into a coroutine are each found."""

    class Extra(AsyncRuntime):
        async def extra(self) -> None:
            return None

    class OtherDefault(AsyncRuntime):
        async def wait(self, ref: str, timeout: float | None = 5.0) -> Agent:
            raise NotImplementedError

    class OtherResult(AsyncRuntime):
        async def get_agent(self, ref: str) -> Agent | None:  # type: ignore[override]
            return None

    class NotAStream(AsyncRuntime):
        async def follow_logs(self, ref: str, tail: int = 10) -> AsyncIterator[bytes]:  # type: ignore[override]
            raise NotImplementedError

    assert twin_differences(Runtime, Extra) == ["extra: only in Extra"]
    assert [p.split(":")[0] for p in twin_differences(Runtime, OtherDefault)] == ["wait"]
    assert [p.split(":")[0] for p in twin_differences(Runtime, OtherResult)] == ["get_agent"]
    assert twin_differences(Runtime, NotAStream) == [
        "follow_logs: a generator, but not an async one in the twin"
    ]


async def test_the_twins_hold_the_same_settings(tmp_path: Path) -> None:
    sync = Runtime(3.0, home=tmp_path, autostart=False, timeout=7.0, project="p")
    async with AsyncRuntime(3.0, home=tmp_path, autostart=False, timeout=7.0, project="p") as a:
        public = {k: v for k, v in vars(sync).items() if not k.startswith("_")}
        assert {k: v for k, v in vars(a).items() if not k.startswith("_")} == public


#: A value other than the default for every `StartOptions` key: a key added to
#: `StartOptions` needs one here, and must then reach the request.
SAMPLES: dict[str, Any] = {
    "name": "sample",
    "budget": 1.5,
    "env": {"SAMPLE": "1"},
    "env_files": ["/etc/agent.env"],
    "restart": "always",
    "max_restarts": None,
    "min_uptime": 2.5,
    "log_max_size": 4096,
    "log_keep": 2,
    "max_memory": 64 << 20,
    "max_open_files": 256,
    "max_cpu_seconds": 60,
    "spec_digest": "d1",
    "cwd": "/",
    "on_budget": "pause",
    "pii": "redact",
    "pii_types": "email,secret=block",
    "pii_file": "/etc/ironrt/pii.toml",
    "rpm": 5,
    "tpm": 500,
    "allow_unmetered": True,
    "python": "/usr/bin/python3-sample",
    "inherit_env": False,
    "project": "sample",
}


def test_every_start_option_reaches_the_request() -> None:
    """An option `start_body` never reads would be accepted and silently dropped: the
    very failure the unknown-keyword check exists to prevent."""
    assert set(SAMPLES) == START_OPTIONS
    plain = msgspec.json.decode(start_body("x.py", (), None, {}))
    for key, value in SAMPLES.items():
        changed = msgspec.json.decode(start_body("x.py", (), None, {key: value}))  # type: ignore[misc]
        assert changed != plain, f"start_agent({key}=...) does not change the request"


def test_unknown_keywords_are_refused_before_sending() -> None:
    """With no daemon at all the answer is TypeError, not DaemonUnavailable: the check
    comes before any connection."""
    with tempfile.TemporaryDirectory(prefix="irt-", dir="/tmp") as home:
        rt = Runtime(home=home, autostart=False)
        with pytest.raises(TypeError, match=r"'budgt' \(did you mean 'budget'\?\)"):
            rt.start_agent("x.py", budgt=5)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"'budjet_usd' \(did you mean 'budget_usd'\?\)"):
            rt.update_agent("x", budjet_usd=1)
        with pytest.raises(DaemonUnavailable):  # and with good keywords, it is sent
            rt.start_agent("x.py", budget=5)


def test_runtime_refuses_unknown_keywords(daemon: TempDaemon) -> None:
    rt = Runtime(home=daemon.home, autostart=False)
    with pytest.raises(TypeError, match=r"start_agent\(\).*'budgt'.*did you mean 'budget'"):
        rt.start_agent("x.py", budgt=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"'max_restart'.*did you mean 'max_restarts'"):
        rt.start_agent("x.py", max_restart=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'zzz'") as refused:
        rt.start_agent("x.py", zzz=1)  # type: ignore[call-arg]
    assert "did you mean" not in str(refused.value)  # no hint when nothing is close
    with pytest.raises(TypeError, match="sequence of strings"):
        rt.start_agent("x.py", "--verbose")  # would run as 9 one-letter arguments
    # An unknown field is a TypeError even for an agent that does not exist: refused
    # before sending, where AgentNotFound would be the daemon's answer.
    with pytest.raises(TypeError, match=r"update_agent\(\).*did you mean 'budget_usd'"):
        rt.update_agent("no-such-agent", budjet_usd=1)
    with pytest.raises(TypeError, match="'windw'"):  # its parameters are spelled out
        rt.set_limits("global", windw="1h")  # type: ignore[call-arg]
    assert rt.list_agents() == []
    assert [e for e in rt.events() if e.agent_id is not None] == []


async def test_async_runtime_refuses_unknown_keywords(daemon: TempDaemon) -> None:
    async with AsyncRuntime(home=daemon.home, autostart=False) as rt:
        with pytest.raises(TypeError, match=r"start_agent\(\).*'budgt'.*did you mean 'budget'"):
            await rt.start_agent("x.py", budgt=5)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"update_agent\(\).*did you mean 'budget_usd'"):
            await rt.update_agent("no-such-agent", budjet_usd=1)
        with pytest.raises(TypeError, match="'windw'"):
            await rt.set_limits("global", windw="1h")  # type: ignore[call-arg]
        assert await rt.list_agents() == []


#: A short agent with one LLM call (the daemon's offline provider answers it).
CHATTY = """
import openai
print("first line", flush=True)
reply = openai.OpenAI().chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
)
print("tokens", reply.usage.prompt_tokens, flush=True)
print("last line", flush=True)
"""


async def running(rt: AsyncRuntime, ref: str) -> Agent:
    with anyio.fail_after(15):
        while (agent := await rt.get_agent(ref)).status.value != "running":
            await anyio.sleep(0.05)
    return agent


async def test_the_async_twin_answers_as_the_sync_one(daemon: TempDaemon, tmp_path: Path) -> None:
    """Each call the async twin gained, through a real daemon, next to the sync twin."""
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    rt = Runtime(home=daemon.home, autostart=False)
    async with AsyncRuntime(home=daemon.home, autostart=False) as art:
        assert await art.ping()
        await art.ensure_daemon()  # one answers: nothing to start
        chatty = await art.start_agent(str(script), name="chatty", budget=1.0)

        # A short agent's followed output ends by itself once the agent has ended.
        with anyio.fail_after(60):
            followed = b"".join([chunk async for chunk in art.follow_logs(chatty)])
        assert b"first line" in followed and b"last line" in followed
        assert followed == b"".join(rt.follow_logs(chatty))
        assert (await art.wait(chatty, timeout=30)).exit_code == 0

        traces = await art.traces(agent="chatty")
        assert len(traces) == 1 and traces == rt.traces(agent="chatty")
        assert await art.traces(limit=1) == traces
        usage = await art.usage(by="model")
        assert usage == rt.usage(by="model") and [r.llm_calls for r in usage.rows] == [1]
        assert await art.usage() == rt.usage()
        assert await art.usage(agent=chatty) == rt.usage(agent=chatty)

        # The call's CostUpdate is published at the next tick (every 2 s), maybe after
        # the agent ended: its events are final only once it is there.
        with anyio.fail_after(15):
            while "CostUpdate" not in {e.kind async for e in art.events(agent=chatty)}:
                await anyio.sleep(0.05)
        every = [e async for e in art.events(agent=chatty)]
        assert every == list(rt.events(agent=chatty))
        assert every[0].kind == "AgentStarted" and "AgentExited" in {e.kind for e in every}
        page = [e async for e in art.events(agent=chatty, since=every[0].id, limit=2)]
        assert page == every[1:3] == list(rt.events(agent=chatty, since=every[0].id, limit=2))
        # Followed: the same backlog, then live events (none here: the agent has ended).
        stream = art.events(agent=chatty, since=every[0].id, follow=True)
        with anyio.fail_after(30):
            backlog = [await anext(stream) for _ in every[1:]]
        await stream.aclose()  # type: ignore[attr-defined]
        assert backlog == every[1:]

        await art.set_limits("chatty", rpm=7)
        assert await art.limits() == rt.limits()
        assert f"agent:{chatty}" in {s.scope for s in await art.limits()}
        pairs = await art.list_agents_with_metrics()
        assert [a.id for a, _ in pairs] == [a.id for a, _ in rt.list_agents_with_metrics()]
        assert [m.id for _, m in pairs] == [chatty]

        sleeper = await art.start_agent(["sleep", "60"], name="sleeper")
        updated = await art.update_agent("sleeper", rpm=3, pii="redact", budget_usd=2.0)
        assert (updated.rpm, updated.pii, updated.budget_usd) == (3, "redact", 2.0)
        assert rt.get_agent(sleeper).rpm == 3
        with pytest.raises(InvalidRequest):  # a bad value is still the daemon's refusal
            await art.update_agent("sleeper", rpm=0)
        first = await running(art, sleeper)
        restarted = await art.restart_agent("sleeper", timeout=5)
        assert restarted.restarts == 1 and restarted.pid != first.pid
        with pytest.raises(WaitTimeout):
            await art.wait("sleeper", timeout=0.2)
        assert (await art.stop_agent("sleeper", timeout=5)).status.value == "stopped"

        await art.shutdown_daemon(wait=30)
        assert not await art.ping() and not rt.ping()
        with pytest.raises(DaemonUnavailable):
            await art.health()
        with pytest.raises(DaemonUnavailable):
            await art.shutdown_daemon()
