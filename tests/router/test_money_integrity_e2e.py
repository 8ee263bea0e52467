"""Money integrity against a hostile agent and a lying provider, through a real daemon:
no minted budget, no charge for refused calls, no belief in impossible usage, and no
answered call whose cost is lost in a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import genai_prices
import httpx
import openai
import pytest

from ironrt.governance.flow import TokenUsage
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import OPENAI_KEY, agent_script, token_agent

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}


def post(
    d: TempDaemon, token: str, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    if path.startswith("/v1/messages"):
        headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}
    return httpx.post(d.router_url + path, headers=headers, json=body, timeout=30)


def books(d: TempDaemon, agent_id: str) -> tuple[float, float]:
    scope = d.rt.get_limits(f"agent:{agent_id}")
    return scope.spent_usd, scope.held_usd


IMPOSSIBLE_LIMITS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"max_tokens": -10_000_000}),
    ("/v1/chat/completions", {"max_tokens": 0}),
    ("/v1/chat/completions", {"max_tokens": 10**12}),
    ("/v1/chat/completions", {"max_tokens": 1.5}),
    ("/v1/chat/completions", {"max_tokens": "100"}),
    ("/v1/chat/completions", {"max_tokens": True}),
    ("/v1/chat/completions", {"max_completion_tokens": -1}),
    ("/v1/chat/completions", {"n": 0}),
    ("/v1/chat/completions", {"n": 100_000}),
    ("/v1/responses", {"max_output_tokens": -5}),
    ("/v1/messages", {"max_tokens": -1}),
]


def test_impossible_token_limits_get_a_400_before_anything_is_held(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    agent_id, token = token_agent(gov, tmp_path, budget=5.0)
    for path, extra in IMPOSSIBLE_LIMITS:
        if path == "/v1/responses":
            body = {"model": "gpt-4o-mini", "input": "x", **extra}
        elif path == "/v1/messages":
            body = {"model": "claude-haiku-4-5", "messages": CHAT["messages"], **extra}
        else:
            body = {**CHAT, **extra}
        r = post(gov, token, body, path)
        assert r.status_code == 400 and r.headers["x-should-retry"] == "false", (path, extra)
        assert "must be" in r.text
    assert upstream.requests == []
    assert books(gov, agent_id) == (0.0, 0.0)


def test_a_negative_max_tokens_through_the_sdk_is_refused_without_retries(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    agent_id, token = token_agent(gov, tmp_path, budget=5.0)
    c = openai.OpenAI(base_url=gov.router_url + "/v1", api_key=token, max_retries=3)
    request.addfinalizer(c.close)
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="gpt-4o", max_tokens=-10_000_000, messages=CHAT["messages"])  # type: ignore[arg-type]
    assert upstream.requests == [] and books(gov, agent_id) == (0.0, 0.0)
    c.chat.completions.create(model="gpt-4o", max_tokens=20, messages=CHAT["messages"])  # type: ignore[arg-type]
    spent, held = books(gov, agent_id)
    assert 0 < spent < 0.01 and held == 0


def test_a_call_the_provider_refused_costs_nothing(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    agent_id, token = token_agent(gov, tmp_path, budget=5.0)
    upstream.latency = 0.1
    statuses = [400, 429, 500, 503, 504, 302]
    for status in statuses:
        upstream.fail(times=1, status=status)
        r = post(gov, token, {**CHAT, "model": "gpt-4o"})
        assert r.status_code == status
        assert books(gov, agent_id) == (0.0, 0.0)
    traces = gov.rt.traces(agent=agent_id)
    assert [t.status_code for t in traces] == statuses
    assert all(t.cost_usd == 0 for t in traces)


def test_usage_that_cannot_be_true_is_not_believed(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    agent_id, token = token_agent(gov, tmp_path, budget=1.0)
    lies = [
        TokenUsage(input_tokens=-1000, output_tokens=-60_000_000),
        TokenUsage(input_tokens=10**12, output_tokens=10**12),
        TokenUsage(input_tokens=10, output_tokens=5000),  # but max_tokens was 20
        TokenUsage(input_tokens=10, output_tokens=5, cached_tokens=50),
    ]
    for lie in lies:
        upstream.usage = lie
        r = post(gov, token, {**CHAT, "max_tokens": 20})
        assert r.status_code == 200  # the agent got its answer
        spent, held = books(gov, agent_id)
        assert 0 < spent <= 1.0 and held == 0
    traces = gov.rt.traces(agent=agent_id)
    assert len(traces) == len(lies)
    for t in traces:
        assert t.error is not None and "usage rejected" in t.error
        assert 0 < t.cost_usd < 0.001  # the reservation of a 20-token call, not the lie
    rejected = [e for e in gov.rt.events(agent=agent_id, limit=100) if e.kind == "UsageRejected"]
    assert len(rejected) == len(lies)
    assert gov.rt.get_agent(agent_id).spent_usd == pytest.approx(sum(t.cost_usd for t in traces))


def test_an_answer_naming_another_model_is_priced_as_the_requested_one(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    agent_id, token = token_agent(gov, tmp_path, budget=1.0)
    upstream.usage = TokenUsage(input_tokens=1000, output_tokens=100)
    mini = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1000, output_tokens=100),
        "gpt-4o-mini",
        provider_id="openai",
    ).total_price
    upstream.answer_model = "o1-pro"  # 1,000x the price
    assert post(gov, token, CHAT).status_code == 200
    upstream.answer_model = "gpt-4o-mini-2024-07-18"  # a snapshot: no mismatch
    assert post(gov, token, CHAT).status_code == 200
    first, second = gov.rt.traces(agent=agent_id)
    assert first.cost_usd == pytest.approx(float(mini)) and first.model == "gpt-4o-mini"
    assert (
        second.cost_usd == pytest.approx(float(mini)) and second.model == "gpt-4o-mini-2024-07-18"
    )
    mismatch = [e for e in gov.rt.events(agent=agent_id, limit=100) if e.kind == "ModelMismatch"]
    assert [(e.requested, e.answered) for e in mismatch] == [("gpt-4o-mini", "o1-pro")]


def test_sent_but_unanswered_is_charged_its_reservation_never_sent_is_free(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    env = {
        "IRONRT_OPENAI_BASE_URL": upstream.url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "IRONRT_RETRY_MAX_ATTEMPTS": "1",
        "IRONRT_READ_TIMEOUT": "0.5",
    }
    with TempDaemon(offline=False, env=env) as d:
        agent_id, token = token_agent(d, tmp_path, budget=1.0)
        upstream.hang(times=1, seconds=3)
        r = post(d, token, {**CHAT, "max_tokens": 100})
        assert r.status_code == 504
        [trace] = d.rt.traces(agent=agent_id)
        assert trace.cost_usd > 0 and "charged the reserved upper bound" in (trace.error or "")
        assert books(d, agent_id) == (pytest.approx(trace.cost_usd), 0.0)
        upstream.drop_mid_stream(times=1, after=2)  # the stream breaks before its usage
        r = post(d, token, {**CHAT, "max_tokens": 100, "stream": True})
        assert r.status_code == 200
        traces = d.rt.traces(agent=agent_id)
        assert len(traces) == 2 and traces[1].cost_usd > 0
    closed = {
        "IRONRT_OPENAI_BASE_URL": "http://127.0.0.1:9",
        "OPENAI_API_KEY": OPENAI_KEY,
        "IRONRT_RETRY_MAX_ATTEMPTS": "1",
    }
    second = tmp_path / "second"
    second.mkdir()
    with TempDaemon(offline=False, env=closed) as d:
        agent_id, token = token_agent(d, second, budget=1.0)
        assert post(d, token, CHAT).status_code == 502
        assert books(d, agent_id) == (0.0, 0.0)


CRASH_AGENT = """
    import os, signal, sys, time, openai
    kill_file = sys.argv[1]
    c = openai.OpenAI(max_retries=0, timeout=5)
    i = 0
    while i < 400:
        i += 1
        try:
            if i % 2:
                c.chat.completions.create(model="gpt-4o-mini", max_tokens=30,
                    messages=[{"role": "user", "content": "crash test " + str(i)}])
            else:
                with c.chat.completions.create(model="gpt-4o-mini", max_tokens=30, stream=True,
                        messages=[{"role": "user", "content": "crash test " + str(i)}]) as s:
                    for _ in s:
                        pass
            print("answered", i, flush=True)
            if os.path.exists(kill_file):
                # The harshest moment: the daemon dies the instant this answer arrived.
                pid = int(open(kill_file).read())
                os.remove(kill_file)
                os.kill(pid, signal.SIGKILL)
                print("killed", pid, flush=True)
        except Exception as exc:
            print("failed", i, type(exc).__name__, flush=True)
            time.sleep(0.05)
"""


def quiet_books(gov: TempDaemon, agent_id: str) -> tuple[float, list[Any], float]:
    """The agent's spend, its traces and its scope's spend, read with no call settling in
    between: the agent keeps calling, so a call that settles between two reads would make
    them disagree by its cost. Read again until the spend did not move meanwhile."""
    for _ in range(100):
        before = gov.rt.get_agent(agent_id).spent_usd
        traces = gov.rt.traces(agent=agent_id, limit=10_000)
        scope_spent = gov.rt.get_limits(f"agent:{agent_id}").spent_usd
        if gov.rt.get_agent(agent_id).spent_usd == before:
            return before, list(traces), scope_spent
    raise AssertionError("the agent's spend never held still for four reads")


def test_a_daemon_sigkill_never_loses_an_answered_calls_cost(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The agent itself SIGKILLs the daemon right after an answer (stream or not) reached
    it: every answered call must have its trace and its cost on disk, and spend read back
    must never go down."""
    upstream.latency = 0.02
    script = agent_script(tmp_path, "crash.py", CRASH_AGENT)
    kill_file = tmp_path / "kill"
    agent_id = gov.rt.start_agent(script, [str(kill_file)], budget=5.0)
    log = gov.home / "logs" / f"{agent_id}.log"
    last_spent = 0.0
    for cycle in range(5):
        wait_until(lambda c=cycle: log.read_text().count("answered") >= 3 * (c + 1), timeout=30)
        assert gov.proc is not None
        kill_file.write_text(str(gov.proc.pid))
        wait_until(lambda c=cycle: log.read_text().count("killed") > c, timeout=30)
        gov.proc.wait(10)
        answered = log.read_text().count("answered")
        gov.start()
        spent, traces, scope_spent = quiet_books(gov, agent_id)
        assert len([t for t in traces if t.status_code == 200]) >= answered, (cycle, answered)
        assert spent >= last_spent
        assert spent == pytest.approx(sum(t.cost_usd for t in traces), abs=1e-12)
        assert scope_spent == pytest.approx(spent, abs=1e-12)
        last_spent = spent
    gov.rt.stop_agent(agent_id, timeout=2)
