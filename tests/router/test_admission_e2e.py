"""Exact admission through a real daemon, real SDKs and a fake upstream that takes its
time, as real providers do: never overspend, never refuse while money remains."""

from __future__ import annotations

import json
from pathlib import Path

import genai_prices
import msgspec
import openai
import pytest

from ironrt.governance.flow import TokenUsage
from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.router.helpers import OPENAI_KEY, agent_script, run_agent, sdk_client, token_agent


def price(model: str, inp: int, out: int) -> float:
    usage = genai_prices.Usage(input_tokens=inp, output_tokens=out)
    return float(genai_prices.calc_price(usage, model, provider_id="openai").total_price)


client = sdk_client


BURST = """
    import asyncio, json, sys, openai
    n, model = int(sys.argv[1]), sys.argv[2]
    async def main():
        c = openai.AsyncOpenAI(max_retries=2)
        async def one(i):
            try:
                r = await c.chat.completions.create(model=model,
                    messages=[{"role": "user", "content": "burst call " + str(i)}])
                return "ok"
            except openai.APIStatusError as exc:
                return f"{exc.status_code}:{exc.message}"
        print(json.dumps(await asyncio.gather(*[one(i) for i in range(n)])))
    asyncio.run(main())
"""


def test_eight_concurrent_calls_without_max_tokens_all_fit_a_5_usd_budget(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    # gpt-4o: a 128k context window but 16,384 output tokens at most. Holding the window
    # (~$1.28 a call) refused most of these; holding the max output (~$0.16) fits all.
    upstream.latency = 1.0
    script = agent_script(tmp_path, "burst.py", BURST)
    out = run_agent(gov, script, "8", "gpt-4o", budget=5.0, on_budget="stop")
    results = json.loads(out.strip().splitlines()[-1])
    assert results == ["ok"] * 8
    agent = gov.rt.list_agents()[0]
    assert agent.status.value == "exited" and agent.stop_reason is None
    assert 0 < agent.spent_usd < 0.01
    kinds = {e.kind for e in gov.rt.events(limit=1000)}
    assert "BudgetExhausted" not in kinds and "AgentStopped" not in kinds
    chats = [r for r in upstream.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == 8 and all("max_tokens" not in (r.body or {}) for r in chats)


def test_a_burst_waits_for_holds_instead_of_being_refused(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """64 concurrent calls against ~10 calls' worth: the ones that fit once holds settle
    wait for them; the rest get a 402 that is not retried; spend never exceeds."""
    upstream.latency = 0.3
    upstream.usage = TokenUsage(input_tokens=30, output_tokens=200)
    per_call = price("gpt-4o-mini", 30, 200)
    budget = round(per_call * 10.5, 9)
    script = agent_script(tmp_path, "burst.py", BURST)
    out = run_agent(gov, script, "64", "gpt-4o-mini", budget=budget, timeout=90)
    results = json.loads(out.strip().splitlines()[-1])
    ok = results.count("ok")
    refused = [r for r in results if r != "ok"]
    assert ok >= 9, results
    assert refused and all(r.startswith("402:") for r in refused)
    assert "budget exhausted in agent:" in refused[0]
    chats = [r for r in upstream.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == ok  # the SDK (max_retries=2) did not retry a single 402
    limits = gov.rt.limits()
    own = next(s for s in limits if s.scope.startswith("agent:"))
    assert own.spent_usd <= budget and own.held_usd == 0 and own.in_flight == 0
    traces = gov.rt.traces(limit=1000)
    assert len(traces) == 64
    assert own.spent_usd == pytest.approx(sum(t.cost_usd for t in traces), abs=1e-9)
    assert own.spent_usd >= 9 * per_call
    exhausted = [e for e in gov.rt.events(limit=1000) if e.kind == "BudgetExhausted"]
    assert len(exhausted) == 1  # announced once, not once per refused call
    data = msgspec.to_builtins(exhausted[0])
    assert data["held_usd"] >= 0 and data["budget_usd"] == budget
    if data.get("refused"):  # announced by the first refusal: with the bound that failed
        assert data["call_bound_usd"] > 0
    else:  # or by the settle of a call clamped to the exact remainder: spend hit 100 %
        assert data["spent_usd"] == pytest.approx(budget, abs=1e-9)


def test_a_sequential_spender_is_refused_only_when_its_next_call_no_longer_fits(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    upstream.latency = 0.05
    agent_id, token = token_agent(gov, tmp_path)
    c = client(gov, token)
    request.addfinalizer(c.close)
    prompt = "Summarise the quarterly numbers for the board. " * 8
    first = c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}]
    )
    assert first.usage is not None
    per_call = price("gpt-4o", first.usage.prompt_tokens, first.usage.completion_tokens)
    budget = round(per_call * 50, 9)  # each call is ~2% of the budget
    gov.rt.set_limits(f"agent:{agent_id}", budget_usd=budget)
    spent_before = gov.rt.get_limits(f"agent:{agent_id}").spent_usd
    gov.rt.set_limits(f"agent:{agent_id}", budget_usd=round(budget + spent_before, 9))
    calls = 0
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(200):
            c.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": prompt}]
            )
            calls += 1
    assert refused.value.status_code == 402
    scope = gov.rt.get_limits(f"agent:{agent_id}")
    left = (scope.budget_usd or 0) - scope.spent_usd
    assert 0 <= left < per_call  # refused only once the next call cannot fit
    assert calls >= 49
    assert scope.spent_usd - spent_before >= 0.97 * budget


def test_a_project_budget_shared_by_three_bursting_agents(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.latency = 0.3
    upstream.usage = TokenUsage(input_tokens=40, output_tokens=120)
    per_call = price("gpt-4o-mini", 40, 120)
    budget = round(per_call * 20, 9)
    gov.rt.set_limits("project:team", budget_usd=budget)
    script = agent_script(tmp_path, "burst.py", BURST)
    ids = [
        gov.rt.start_agent(script, ["16", "gpt-4o-mini"], project="team", name=f"w{n}")
        for n in range(3)
    ]
    outcomes: list[str] = []
    for agent_id in ids:
        final = gov.rt.wait(agent_id, timeout=90)
        out = gov.rt.logs(agent_id, tail=1000)
        assert final.exit_code == 0, out
        outcomes += json.loads(out.strip().splitlines()[-1])
    ok = outcomes.count("ok")
    assert all(o == "ok" or o.startswith("402:") for o in outcomes)
    assert any("project:team" in o for o in outcomes if o != "ok")
    team = gov.rt.get_limits("project:team")
    assert team.spent_usd <= budget and team.held_usd == 0
    assert team.spent_usd >= 0.9 * budget
    assert team.spent_usd == pytest.approx(ok * per_call, abs=1e-9)
    assert sum(gov.rt.get_agent(i).spent_usd for i in ids) == pytest.approx(team.spent_usd)
    assert gov.rt.get_limits("global").spent_usd >= team.spent_usd


def test_calls_over_max_concurrent_wait_then_time_out_with_a_429(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    env = {
        "IRONRT_OPENAI_BASE_URL": upstream.url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "IRONRT_ADMISSION_TIMEOUT": "0.5",
    }
    with TempDaemon(offline=False, env=env) as d:
        agent_id, token = token_agent(d, tmp_path)
        d.rt.set_limits(f"agent:{agent_id}", max_concurrent=1)
        upstream.latency = 1.5
        script = agent_script(
            tmp_path,
            "two.py",
            """
            import asyncio, json, sys, openai
            async def main():
                c = openai.AsyncOpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
                async def one():
                    try:
                        await c.chat.completions.create(model="gpt-4o-mini",
                            messages=[{"role": "user", "content": "x"}])
                        return "ok"
                    except openai.APIStatusError as exc:
                        return [exc.status_code, exc.response.headers.get("retry-after")]
                print(json.dumps(await asyncio.gather(one(), one())))
            asyncio.run(main())
            """,
        )
        out = run_agent(d, script, d.router_url + "/v1", token)
        results = json.loads(out.strip().splitlines()[-1])
        assert sorted(map(str, results)) == sorted(["ok", str([429, "1"])])
        kinds = [e.kind for e in d.rt.events(limit=1000)]
        assert "AdmissionTimeout" in kinds and "BudgetExhausted" not in kinds
