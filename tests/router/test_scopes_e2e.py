"""Budget scopes end to end: windows, pause and resume, allowlists, and limits that
survive a daemon crash. Real daemon, real SDKs, a fake upstream with latency."""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import msgspec
import openai
import pytest

from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import agent_script, sdk_client, token_agent

client = sdk_client


def ask(c: openai.OpenAI, model: str = "gpt-4o-mini") -> None:
    c.chat.completions.create(
        model=model, max_tokens=20, messages=[{"role": "user", "content": "spend a little"}]
    )


def proc_state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return "?"


def test_a_window_resets_spend_so_calls_succeed_again(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    upstream.latency = 0.1
    agent_id, token = token_agent(gov, tmp_path)
    c = client(gov, token)
    request.addfinalizer(c.close)
    ask(c)
    one_call = gov.rt.get_agent(agent_id).spent_usd
    scope = gov.rt.set_limits(agent_id, budget_usd=round(one_call * 3.5, 9), window="3s")
    assert scope.window == "3s" and scope.resets_at is not None
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(10):
            ask(c)
    assert refused.value.status_code == 402
    assert "wait for the window to reset at" in refused.value.message
    resets_at = gov.rt.get_limits(agent_id).resets_at
    wait_until(lambda: gov.rt.get_limits(agent_id).resets_at != resets_at, timeout=8)
    after = gov.rt.get_limits(agent_id)
    assert after.spent_usd == 0 and after.held_usd == 0
    ask(c)  # money again in the new window
    assert gov.rt.get_limits(agent_id).spent_usd == pytest.approx(one_call, rel=0.01)
    ask(c)
    events = list(gov.rt.events(limit=1000))
    assert "BudgetWindowReset" in [e.kind for e in events]
    fifty = [e for e in events if e.kind == "BudgetWarning" and e.threshold_percent == 50]
    assert len(fifty) == 2, [msgspec.to_builtins(e) for e in events]  # re-armed in each window
    # The agent's spend of all time keeps growing across windows.
    all_time = gov.rt.get_agent(agent_id).spent_usd
    assert all_time == pytest.approx(sum(t.cost_usd for t in gov.rt.traces(agent=agent_id)))
    assert all_time > gov.rt.get_limits(agent_id).spent_usd + 2 * one_call


PAUSER = """
    import json, os, sys, openai
    c = openai.OpenAI(max_retries=0)
    for i in range(4):
        r = c.chat.completions.create(model="gpt-4o-mini", max_tokens=20,
            messages=[{"role": "user", "content": "work item " + str(i)}])
        print("call", i, "ok", flush=True)
"""


def test_pause_stops_the_agent_and_raising_the_budget_resumes_the_held_call(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.latency = 0.1
    script = agent_script(tmp_path, "pauser.py", PAUSER)
    agent_id = gov.rt.start_agent(script, budget=0.000001, on_budget="pause")
    wait_until(lambda: gov.rt.get_agent(agent_id).status.value == "paused", timeout=20)
    agent = gov.rt.get_agent(agent_id)
    assert agent.stop_reason == "budget" and agent.pid is not None
    # SIGSTOPped: a signal takes effect once the kernel schedules its target, which on a
    # busy machine can come after the status the daemon reports.
    pid = agent.pid
    wait_until(lambda: proc_state(pid) == "T", timeout=5)
    logs_before = gov.rt.logs(agent_id)
    time.sleep(0.5)
    assert gov.rt.logs(agent_id) == logs_before  # nothing moves while paused
    paused = [e for e in gov.rt.events(limit=1000) if e.kind == "AgentPaused"]
    assert paused and paused[0].scope == f"agent:{agent_id}"
    gov.rt.set_budget(agent_id, 5.0)
    final = gov.rt.wait(agent_id, timeout=30)
    assert final.exit_code == 0 and final.stop_reason is None
    out = gov.rt.logs(agent_id)
    assert all(f"call {i} ok" in out for i in range(4))  # the held call went through
    assert "AgentResumed" in [e.kind for e in gov.rt.events(limit=1000)]


def test_a_project_budget_pauses_every_agent_and_raising_it_resumes_them(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.latency = 0.1
    gov.rt.set_limits("project:crew", budget_usd=0.000001)
    script = agent_script(tmp_path, "pauser.py", PAUSER)
    ids = [
        gov.rt.start_agent(script, project="crew", on_budget="pause", name=f"p{n}")
        for n in range(2)
    ]
    for agent_id in ids:
        wait_until(lambda a=agent_id: gov.rt.get_agent(a).status.value == "paused", timeout=20)
    gov.rt.set_limits("project:crew", budget_usd=5.0)
    for agent_id in ids:
        final = gov.rt.wait(agent_id, timeout=30)
        assert final.exit_code == 0 and "call 3 ok" in gov.rt.logs(agent_id)


def test_a_paused_agent_can_be_stopped(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    script = agent_script(tmp_path, "pauser.py", PAUSER)
    agent_id = gov.rt.start_agent(script, budget=0.0, on_budget="pause")
    wait_until(lambda: gov.rt.get_agent(agent_id).status.value == "paused", timeout=20)
    stopped = gov.rt.stop_agent(agent_id, timeout=3)
    assert stopped.status.value == "stopped" and stopped.stop_reason == "user"
    assert not gov.rt.get_agent(agent_id).status.live
    held = gov.rt.get_limits(agent_id)
    assert held.held_usd == 0 and held.in_flight == 0 and held.waiting == 0


def test_a_model_outside_an_allowlist_is_refused_with_a_403_naming_model_and_scope(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    gov.rt.set_limits("project:ro", models=["gpt-4o-mini*", "claude-haiku-*"])
    _, token = token_agent(gov, tmp_path, project="ro")
    c = openai.OpenAI(base_url=gov.router_url + "/v1", api_key=token, max_retries=3)
    request.addfinalizer(c.close)
    ask(c)  # allowed
    with pytest.raises(openai.PermissionDeniedError) as denied:
        ask(c, "gpt-4o")
    assert "model gpt-4o is not allowed in project:ro" in denied.value.message
    assert denied.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.PermissionDeniedError):
        c.embeddings.create(model="text-embedding-3-small", input="x")
    a = anthropic.Anthropic(base_url=gov.router_url, api_key=token, max_retries=3)
    request.addfinalizer(a.close)
    a.messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    with pytest.raises(anthropic.PermissionDeniedError):
        a.messages.create(
            model="claude-opus-4-7", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    forwarded = [r.body.get("model") for r in upstream.requests if isinstance(r.body, dict)]
    assert "gpt-4o" not in forwarded and "claude-opus-4-7" not in forwarded
    assert forwarded.count("gpt-4o-mini") == 1  # refusals were not retried


def test_limits_and_window_spend_survive_a_daemon_sigkill(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    gov.rt.set_limits("project:keep", budget_usd=2.5, window="1h", rpm=600, models=["gpt-4o*"])
    gov.rt.set_limits("global", max_concurrent=50, tpm=1_000_000)
    agent_id, token = token_agent(gov, tmp_path, project="keep", budget=1.0)
    with client(gov, token) as c:
        ask(c)
    before = {s.scope: s for s in gov.rt.limits()}
    assert before["project:keep"].spent_usd > 0
    gov.kill()
    gov.start()
    after = {s.scope: s for s in gov.rt.limits()}
    for key in ("project:keep", "global", f"agent:{agent_id}"):
        a, b = after[key], before[key]
        assert (a.budget_usd, a.window, a.resets_at, a.rpm, a.tpm, a.max_concurrent, a.models) == (
            b.budget_usd,
            b.window,
            b.resets_at,
            b.rpm,
            b.tpm,
            b.max_concurrent,
            b.models,
        ), key
        assert a.spent_usd == pytest.approx(b.spent_usd, abs=1e-12), key
    # Applied live to the reattached agent: the allowlist still holds.
    with client(gov, token) as c, pytest.raises(openai.PermissionDeniedError):
        ask(c, "gpt-3.5-turbo")


def test_a_window_reset_resumes_a_paused_agent(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """A project window that pays for one call at a time: each call after the first parks
    (the agent is paused) until the window resets, with nobody raising anything."""
    upstream.latency = 0.05
    script = agent_script(tmp_path, "pauser.py", PAUSER)
    gov.rt.set_limits("project:nightly", budget_usd=0.00001, window="2s")
    agent_id = gov.rt.start_agent(script, project="nightly", on_budget="pause")
    final = gov.rt.wait(agent_id, timeout=40)
    assert final.exit_code == 0 and "call 3 ok" in gov.rt.logs(agent_id)
    kinds = [e.kind for e in gov.rt.events(limit=1000)]
    assert kinds.count("AgentPaused") >= 2 and kinds.count("AgentResumed") >= 2
    assert kinds.count("BudgetWindowReset") >= 2
    assert "LimitsChanged" not in kinds[kinds.index("AgentStarted") :]  # nobody raised it
    assert gov.rt.get_limits("project:nightly").spent_usd <= 0.00001


def test_a_paused_agent_that_dies_leaves_no_call_behind(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    import os
    import signal

    script = agent_script(tmp_path, "pauser.py", PAUSER)
    agent_id = gov.rt.start_agent(script, budget=0.0, on_budget="pause")
    wait_until(lambda: gov.rt.get_agent(agent_id).status.value == "paused", timeout=20)
    pid = gov.rt.get_agent(agent_id).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    final = gov.rt.wait(agent_id, timeout=20)
    assert final.status.value == "killed" and final.stop_reason is None
    gov.rt.set_budget(agent_id, 5.0)  # would have let the parked call through
    time.sleep(0.5)
    assert not [r for r in upstream.requests if r.path == "/v1/chat/completions"]
    scope = gov.rt.get_limits(agent_id)
    assert (scope.held_usd, scope.in_flight, scope.waiting, scope.spent_usd) == (0, 0, 0, 0)
