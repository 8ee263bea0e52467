"""Every supported surface through the router with the official SDKs, and budget events."""

from __future__ import annotations

import json
from pathlib import Path

from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import agent_script, run_agent

SURFACES = """
    import asyncio, json, anthropic, openai
    o = openai.OpenAI()
    out = {}
    r = o.responses.create(model="gpt-4o-mini", input="tell me about routers")
    out["responses"] = [r.output_text != "", r.usage.input_tokens > 0]
    with o.responses.stream(model="gpt-4o-mini", input="stream please") as s:
        for _ in s: pass
        out["responses_stream"] = s.get_final_response().usage.output_tokens > 0
    e = o.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    out["embeddings"] = [len(e.data), e.usage.prompt_tokens > 0]
    out["models"] = len(o.models.list().data) > 0
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    t = o.chat.completions.create(model="gpt-4o-mini", tools=tools, messages=[{"role": "user", "content": "use the tool please"}])
    out["tool_call"] = t.choices[0].message.tool_calls[0].function.name
    n = o.chat.completions.create(model="gpt-4o-mini", n=2, messages=[{"role": "user", "content": "twice"}])
    out["choices"] = len(n.choices)
    a = anthropic.Anthropic()
    out["count_tokens"] = a.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": "count me"}]).input_tokens > 0
    async def async_calls():
        ao = openai.AsyncOpenAI()
        aa = anthropic.AsyncAnthropic()
        c = await ao.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "async"}])
        m = await aa.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "async"}])
        stream = await ao.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "async stream"}])
        chunks = [ch async for ch in stream]
        return [c.usage.total_tokens > 0, m.usage.output_tokens > 0, len(chunks) > 2]
    out["async"] = asyncio.run(async_calls())
    print(json.dumps(out))
"""


def test_all_surfaces_with_the_official_sdks(daemon: TempDaemon, tmp_path: Path) -> None:
    out = json.loads(
        run_agent(daemon, agent_script(tmp_path, "s.py", SURFACES), budget=1.0).splitlines()[-1]
    )
    assert out == {
        "responses": [True, True],
        "responses_stream": True,
        "embeddings": [2, True],
        "models": True,
        "tool_call": "lookup",
        "choices": 2,
        "count_tokens": True,
        "async": [True, True, True],
    }
    by_endpoint = {(t.endpoint, t.stream) for t in daemon.rt.traces(limit=100)}
    assert {
        ("responses", False),
        ("responses", True),
        ("embeddings", False),
        ("models", False),
        ("messages.count_tokens", False),
        ("chat.completions", True),
    } <= by_endpoint
    metered = [t for t in daemon.rt.traces(limit=100) if t.endpoint in ("responses", "embeddings")]
    assert all(t.cost_usd > 0 and t.input_tokens > 0 for t in metered)
    free = [
        t for t in daemon.rt.traces(limit=100) if t.endpoint in ("models", "messages.count_tokens")
    ]
    assert all(t.cost_usd == 0 for t in free)


def test_budget_warnings_then_stop_on_exhaustion(daemon: TempDaemon, tmp_path: Path) -> None:
    script = agent_script(
        tmp_path,
        "spender.py",
        """
        import openai, time
        o = openai.OpenAI(max_retries=0)
        while True:
            try:
                o.chat.completions.create(model="gpt-4o-mini", max_tokens=30,
                    messages=[{"role": "user", "content": "spend " * 20}])
            except openai.APIStatusError as exc:
                print("refused", exc.status_code, flush=True)
                time.sleep(0.05)
    """,
    )
    agent_id = daemon.rt.start_agent(script, budget=0.0003, on_budget="stop")
    final = daemon.rt.wait(agent_id, timeout=60)
    assert final.status.value == "stopped" and final.stop_reason == "budget"  # --on-budget stop
    assert final.spent_usd <= 0.0003
    events = [e for e in daemon.rt.events(agent=agent_id, limit=1000)]
    warnings = [e.threshold_percent for e in events if e.kind == "BudgetWarning"]
    assert warnings == sorted(warnings) and 50 in warnings and 80 in warnings
    exhausted = [e for e in events if e.kind == "BudgetExhausted"]
    assert exhausted and exhausted[0].id > max(e.id for e in events if e.kind == "BudgetWarning")
    # Stopped for true exhaustion: what is left cannot pay for the next call's least cost.
    left = exhausted[0].budget_usd - exhausted[0].spent_usd
    assert left < (exhausted[0].call_least_usd or left + 1)
    metrics = daemon.rt.get_metrics(agent_id)
    assert metrics.budget_remaining_usd is not None and metrics.budget_remaining_usd < 0.0003 * 0.2
    assert metrics.llm_calls >= 2


def test_stalled_stream_is_cut_with_a_clear_error(tmp_path: Path) -> None:
    with FakeUpstream() as up:
        env = {
            "IRONRT_OPENAI_BASE_URL": up.url,
            "OPENAI_API_KEY": "sk-test-key-000000000000",
            "IRONRT_READ_TIMEOUT": "0.5",
        }
        with TempDaemon(offline=False, env=env) as d:
            up.delay = 3.0  # far more than the read timeout between two events
            script = agent_script(
                tmp_path,
                "stall.py",
                """
                import openai
                client = openai.OpenAI(max_retries=0)
                # A whole answer first (the delay is between stream events only): the
                # daemon's and the fake upstream's first call are done before the stream,
                # so a loaded machine's slow first answer never meets the 0.5 s timeout.
                client.chat.completions.create(model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "warm"}])
                try:
                    for _ in client.chat.completions.create(model="gpt-4o-mini",
                            stream=True, messages=[{"role": "user", "content": "a b c"}]):
                        pass
                except openai.APIError as exc:
                    print("ERR", exc.message)
            """,
            )
            out = run_agent(d, script, budget=1.0)
            assert "ERR" in out and "stalled" in out
            wait_until(lambda: len(d.rt.traces()) == 2, timeout=5)
            (trace,) = [t for t in d.rt.traces() if t.stream]
            assert "ReadTimeout" in (trace.error or "")
            assert trace.cost_usd > 0  # no usage arrived: the reservation was charged
