"""The router end to end: real agents using the real SDKs, a real daemon, a real fake upstream."""

from __future__ import annotations

import http.client
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import genai_prices
import httpx
import msgspec
import pytest

from ironrt.governance.flow import TokenUsage
from ironrt.protocol.events import PiiAlert
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    agent_script,
    run_agent,
    sdk_client,
    token_agent,
)

BOTH_SDKS = """
    import json, anthropic, openai
    o = openai.OpenAI()
    r = o.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    print(json.dumps({"chat": r.usage.prompt_tokens}))
    with o.chat.completions.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]) as s:
        for _ in s: pass
        print(json.dumps({"chat_stream": s.get_final_completion().choices[0].message.content}))
    a = anthropic.Anthropic()
    m = a.messages.create(model="claude-haiku-4-5", max_tokens=400, messages=[{"role": "user", "content": "hi"}])
    print(json.dumps({"messages": m.usage.input_tokens}))
    with a.messages.stream(model="claude-haiku-4-5", max_tokens=400, messages=[{"role": "user", "content": "hi"}]) as s:
        print(json.dumps({"messages_stream": "".join(s.text_stream)}))
    raw = o.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    print(json.dumps({"raw_status": raw.http_response.status_code}))
"""


def db_rows(d: TempDaemon, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(d.home / "ironrt.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_both_sdks_through_router_priced_to_the_micro_dollar(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.usage = TokenUsage(input_tokens=1200, output_tokens=300, cached_tokens=200)
    out = run_agent(gov, agent_script(tmp_path, "both.py", BOTH_SDKS), budget=5.0)
    assert '"chat": 1200' in out and '"raw_status": 200' in out and '"messages_stream": "' in out
    traces = gov.rt.traces(limit=100)
    assert [(t.provider, t.endpoint, t.stream) for t in traces] == [
        ("openai", "chat.completions", False),
        ("openai", "chat.completions", True),
        ("anthropic", "messages", False),
        ("anthropic", "messages", True),
        ("openai", "chat.completions", False),
    ]
    for t in traces:
        assert (t.input_tokens, t.output_tokens, t.cached_tokens) == (1200, 300, 200)
        usage = genai_prices.Usage(input_tokens=1200, cache_read_tokens=200, output_tokens=300)
        expected = genai_prices.calc_price(usage, t.model, provider_id=t.provider).total_price
        assert abs(Decimal(str(t.cost_usd)) - expected) < Decimal("0.000001"), t
        assert t.status_code == 200 and t.error is None and t.latency_ms > 0
    agent = gov.rt.list_agents()[0]
    assert agent.spent_usd == pytest.approx(sum(t.cost_usd for t in traces), abs=1e-9)
    # The real key went upstream, the agent's token did not.
    for req in upstream.requests:
        auth = req.headers.get("authorization", "") + req.headers.get("x-api-key", "")
        assert OPENAI_KEY in auth or ANTHROPIC_KEY in auth
        assert "ic-" not in auth


def test_usage_chunk_removed_unless_asked(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    script = agent_script(
        tmp_path,
        "chunks.py",
        """
        import json, openai
        o = openai.OpenAI()
        def run(**kw):
            chunks = list(o.chat.completions.create(model="gpt-4o-mini", stream=True,
                          messages=[{"role": "user", "content": "count"}], **kw))
            return [c.usage is not None for c in chunks], [len(c.choices) for c in chunks]
        print(json.dumps({"plain": run(), "asked": run(stream_options={"include_usage": True})}))
    """,
    )
    out = json.loads(run_agent(gov, script).strip().splitlines()[-1])
    plain_usage, plain_choices = out["plain"]
    asked_usage, asked_choices = out["asked"]
    assert not any(plain_usage) and 0 not in plain_choices  # no usage-only chunk leaked
    assert asked_usage[-1] and asked_choices[-1] == 0  # the agent asked: it gets it
    # Both upstream requests asked for usage, so both calls were metered.
    assert all(r.body["stream_options"]["include_usage"] is True for r in upstream.requests)
    assert all(t.output_tokens > 0 for t in gov.rt.traces())


def test_first_chunk_arrives_while_upstream_holds_the_rest(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    marker = tmp_path / "first-chunk"
    script = agent_script(
        tmp_path,
        "hold.py",
        f"""
        import openai
        s = openai.OpenAI().chat.completions.create(model="gpt-4o-mini", stream=True,
            messages=[{{"role": "user", "content": "one two three four"}}])
        for i, chunk in enumerate(s):
            if i == 0:
                open({str(marker)!r}, "w").write("got it")
        print("done")
    """,
    )
    with upstream.hold_stream(timeout=30) as hold:
        agent_id = gov.rt.start_agent(script)
        wait_until(marker.exists, timeout=20)  # the rest is still held upstream
        assert not hold.released
    final = gov.rt.wait(agent_id, timeout=30)
    assert final.exit_code == 0 and "done" in gov.rt.logs(agent_id)


def test_concurrent_calls_never_overspend(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.usage = TokenUsage(input_tokens=20, output_tokens=50)
    upstream.latency = 0.2
    per_call = float(
        genai_prices.calc_price(
            genai_prices.Usage(input_tokens=20, output_tokens=50),
            "gpt-4o-mini",
            provider_id="openai",
        ).total_price
    )
    budget = round(per_call * 10, 8)
    script = agent_script(
        tmp_path,
        "burst.py",
        """
        import asyncio, json, openai
        async def main():
            client = openai.AsyncOpenAI()
            async def one():
                try:
                    await client.chat.completions.create(model="gpt-4o-mini", max_tokens=50,
                        messages=[{"role": "user", "content": "go"}])
                    return "ok"
                except openai.APIStatusError as exc:
                    return f"{exc.status_code}:{type(exc).__name__}:{exc.message[:60]}"
            print(json.dumps(await asyncio.gather(*[one() for _ in range(64)])))
        asyncio.run(main())
    """,
    )
    results = json.loads(run_agent(gov, script, budget=budget).strip().splitlines()[-1])
    ok = results.count("ok")
    refused = [r for r in results if r != "ok"]
    assert ok >= 9 and refused and all(r.startswith("402:") for r in refused)
    assert "budget exhausted" in refused[0]
    calls = [r for r in upstream.requests if r.path == "/v1/chat/completions"]
    assert len(calls) == ok  # refused calls were never retried nor forwarded
    spent = gov.rt.list_agents()[0].spent_usd
    assert spent <= budget
    assert spent == pytest.approx(ok * per_call, abs=1e-9)
    assert len(gov.rt.traces(limit=1000)) == 64
    kinds = {e.kind for e in gov.rt.events(limit=1000)}
    assert "BudgetExhausted" in kinds


def test_bad_tokens_get_provider_shaped_401(gov: TempDaemon, tmp_path: Path) -> None:
    router = gov.router_url
    for headers in ({"authorization": "Bearer ic-not-a-real-token"}, {}):
        r = httpx.post(
            f"{router}/v1/chat/completions",
            headers=headers,
            json={"model": "gpt-4o-mini", "messages": []},
        )
        assert r.status_code == 401 and r.headers["x-should-retry"] == "false"
        assert r.json()["error"]["type"] == "authentication_error"
    r = httpx.post(
        f"{router}/v1/messages",
        headers={"x-api-key": "ic-bogus"},
        json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []},
    )
    assert r.status_code == 401 and r.json()["type"] == "error"
    # A stopped agent's token is revoked.
    agent_id, token = token_agent(gov, tmp_path)
    ok = httpx.post(
        f"{router}/v1/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )
    assert ok.status_code == 200
    gov.rt.stop_agent(agent_id, timeout=2)
    gone = httpx.post(
        f"{router}/v1/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )
    assert gone.status_code == 401 and "revoked" in gone.json()["error"]["message"]


def test_real_key_appears_nowhere(gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path) -> None:
    script = agent_script(
        tmp_path,
        "leak.py",
        BOTH_SDKS
        + """
    import os
    print(json.dumps(dict(os.environ)))
    try:
        o.chat.completions.create(model="no-such-model-xyz", messages=[{"role": "user", "content": "x"}])
    except openai.APIStatusError as exc:
        print(exc.message)
    """,
    )
    upstream.fail(times=1, status=500, message="upstream exploded")
    agent_id = gov.rt.start_agent(script, budget=1.0)
    gov.rt.wait(agent_id, timeout=60)
    places = {
        "agent output": gov.rt.logs(agent_id, tail=100_000).encode(),
        "database": b"".join(p.read_bytes() for p in gov.home.glob("ironrt.db*")),
        "daemon log": (gov.home / "daemon.log").read_bytes(),
        "events": json.dumps([msgspec.to_builtins(e) for e in gov.rt.events(limit=1000)]).encode(),
        "traces": json.dumps([t.error for t in gov.rt.traces(limit=1000)]).encode(),
    }
    for where, blob in places.items():
        for key in (OPENAI_KEY, ANTHROPIC_KEY, OPENAI_KEY[-20:], ANTHROPIC_KEY[-20:]):
            assert key.encode() not in blob, f"a real key leaked into the {where}"


def test_bad_requests_get_clear_provider_errors(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    _, token = token_agent(gov, tmp_path, budget=1.0)
    router = gov.router_url
    auth = {"authorization": f"Bearer {token}"}
    cases = [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (
            json.dumps({"model": "no-such-model-xyz", "messages": []}).encode(),
            400,
            "model_price_unknown",
        ),
    ]
    for body, status, code in cases:
        r = httpx.post(
            f"{router}/v1/chat/completions",
            headers={**auth, "content-type": "application/json"},
            content=body,
        )
        assert r.status_code == status and r.json()["error"]["code"] == code, r.text
        assert r.headers["x-should-retry"] == "false"
    huge = httpx.post(
        f"{router}/v1/chat/completions", headers=auth, content=b"x" * (20 * 1024 * 1024)
    )
    assert huge.status_code == 413 and "larger than" in huge.json()["error"]["message"]
    files = httpx.get(f"{router}/v1/files", headers=auth)
    assert files.status_code == 404 and "/v1/chat/completions" in files.json()["error"]["message"]
    assert upstream.requests == []  # none of these reached the provider
    assert gov.rt.health().ok


def _one_chat_call(d: TempDaemon, tmp_path: Path) -> httpx.Response:
    """One chat completion by a new agent with a $1 budget, its IC_TOKEN sent by hand."""
    _, token = token_agent(d, tmp_path, budget=1.0)
    return httpx.post(
        f"{d.router_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )


def test_dead_upstream_is_a_clear_502(tmp_path: Path) -> None:
    env = {
        "IRONRT_OPENAI_BASE_URL": "http://127.0.0.1:9",
        "OPENAI_API_KEY": OPENAI_KEY,
        "IRONRT_RETRY_MAX_ATTEMPTS": "2",
        "IRONRT_RETRY_BACKOFF_INITIAL_S": "0.01",
    }
    with TempDaemon(offline=False, env=env) as d:
        r = _one_chat_call(d, tmp_path)
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unreachable"
        assert (
            "unreachable" in r.json()["error"]["message"] and r.headers["x-should-retry"] == "false"
        )
        assert OPENAI_KEY not in r.text
        wait_until(lambda: len(d.rt.traces()) == 1, timeout=5)  # settled just after the answer
        trace = d.rt.traces()[-1]
        assert (
            trace.status_code == 502
            and trace.cost_usd == 0
            and "ConnectError" in (trace.error or "")
        )
        assert d.rt.health().ok


def test_a_key_with_a_line_break_is_a_clear_500_and_never_sent(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """A key pasted with its line break (`OPENAI_API_KEY="sk-...\\n"`) would split the
    request's head: refused, saying which key, showing none of it; the call is traced."""
    bad = OPENAI_KEY + "\r\nx-injected: 1"
    env = {"IRONRT_OPENAI_BASE_URL": upstream.url, "OPENAI_API_KEY": bad}
    with TempDaemon(offline=False, env=env) as d:
        r = _one_chat_call(d, tmp_path)
        error = r.json()["error"]
        assert r.status_code == 500 and error["code"] == "malformed_provider_key", r.text
        assert "OPENAI_API_KEY" in error["message"] and "line break" in error["message"]
        assert r.headers["x-should-retry"] == "false"
        assert OPENAI_KEY not in r.text and upstream.requests == []
        wait_until(lambda: len(d.rt.traces()) == 1, timeout=5)
        trace = d.rt.traces()[-1]
        assert trace.status_code == 500 and trace.error == "malformed provider key"
        assert trace.cost_usd == 0
        assert OPENAI_KEY not in (d.home / "daemon.log").read_text()


def test_no_key_and_not_offline_is_a_401_that_says_what_to_do(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    env = {"IRONRT_OPENAI_BASE_URL": upstream.url, "OPENAI_API_KEY": ""}
    with TempDaemon(offline=False, env=env) as d:
        script = agent_script(
            tmp_path,
            "nokey.py",
            """
            import openai
            try:
                openai.OpenAI().models.list()
            except openai.AuthenticationError as exc:
                print("AUTH:", exc.message)
        """,
        )
        out = run_agent(d, script)
        assert "AUTH:" in out and "OPENAI_API_KEY" in out and "IRONRT_OFFLINE=1" in out
        assert upstream.requests == []


def test_disconnect_mid_stream_is_still_charged(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.delay = 0.05
    upstream.usage = TokenUsage(input_tokens=100, output_tokens=400)
    script = agent_script(
        tmp_path,
        "quitter.py",
        """
        import openai
        s = openai.OpenAI().chat.completions.create(model="gpt-4o-mini", stream=True,
            messages=[{"role": "user", "content": "a b c d e f g h i j k l m n o p"}])
        next(iter(s))
        s.response.close()  # hang up after the first chunk
        print("left")
    """,
    )
    run_agent(gov, script, budget=1.0)
    wait_until(lambda: len(gov.rt.traces()) == 1, timeout=15)
    trace = gov.rt.traces()[0]
    expected = float(
        genai_prices.calc_price(
            genai_prices.Usage(input_tokens=100, output_tokens=400),
            "gpt-4o-mini",
            provider_id="openai",
        ).total_price
    )
    assert trace.output_tokens == 400 and trace.cost_usd == pytest.approx(expected, abs=1e-9)
    assert "disconnected" in (trace.error or "")
    assert gov.rt.list_agents()[0].spent_usd == pytest.approx(expected, abs=1e-9)


def test_spend_survives_daemon_sigkill_and_reattached_agent_stays_governed(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.usage = TokenUsage(input_tokens=50, output_tokens=50)
    go = tmp_path / "go"
    script = agent_script(
        tmp_path,
        "loop.py",
        f"""
        import os, time, openai
        client = openai.OpenAI(max_retries=0)
        done = 0
        while done < 2:
            if os.path.exists({str(go)!r} + str(done)):
                client.chat.completions.create(model="gpt-4o-mini", max_tokens=50,
                    messages=[{{"role": "user", "content": "x"}}])
                done += 1
                print("call", done, flush=True)
            time.sleep(0.02)
    """,
    )
    agent_id = gov.rt.start_agent(script, budget=1.0)
    (tmp_path / "go0").write_text("")
    wait_until(lambda: "call 1" in gov.rt.logs(agent_id), timeout=20)
    spent = gov.rt.get_agent(agent_id).spent_usd
    assert spent > 0
    gov.kill()
    gov.start()
    assert gov.rt.get_agent(agent_id).spent_usd == pytest.approx(spent, abs=1e-12)
    assert gov.rt.get_agent(agent_id).status.value == "running"
    (tmp_path / "go1").write_text("")
    final = gov.rt.wait(agent_id, timeout=30)
    assert final.exit_code is None and "call 2" in gov.rt.logs(agent_id)
    assert final.spent_usd == pytest.approx(2 * spent, abs=1e-12)
    assert len(gov.rt.traces(agent=agent_id)) == 2
    assert db_rows(gov, f"SELECT spent_usd FROM agents WHERE id = '{agent_id}'")[0][
        0
    ] == pytest.approx(2 * spent)


def test_budget_clamps_max_tokens_before_refusing(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    _, token = token_agent(gov, tmp_path, budget=0.0002)
    r = httpx.post(
        f"{gov.router_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={
            "model": "gpt-4o-mini",
            "max_tokens": 100_000,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert r.status_code == 200
    sent = upstream.requests[-1].body
    assert 16 <= sent["max_tokens"] < 100_000  # what the remaining budget affords
    wait_until(lambda: any(e.kind == "BudgetClamped" for e in gov.rt.events()), timeout=5)


def test_raising_the_budget_of_a_running_agent(gov: TempDaemon, tmp_path: Path) -> None:
    agent_id, token = token_agent(gov, tmp_path, budget=0.0)
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "x"}],
    }
    auth = {"authorization": f"Bearer {token}"}
    refused = httpx.post(f"{gov.router_url}/v1/chat/completions", headers=auth, json=body)
    assert (
        refused.status_code == 402
        and "spent $0 of $0 ($0 held by calls in flight)" in refused.json()["error"]["message"]
    )
    gov.rt.set_budget(agent_id, 1.0)
    assert (
        httpx.post(f"{gov.router_url}/v1/chat/completions", headers=auth, json=body).status_code
        == 200
    )
    assert gov.rt.get_metrics(agent_id).budget_usd == 1.0


def test_unmetered_endpoints_forwarded_only_when_allowed(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    _, token = token_agent(gov, tmp_path, allow_unmetered=True)
    r = httpx.get(f"{gov.router_url}/v1/files", headers={"authorization": f"Bearer {token}"})
    assert r.status_code < 500
    assert upstream.requests and upstream.requests[-1].path == "/v1/files"
    wait_until(lambda: len(gov.rt.traces()) == 1, timeout=5)
    assert gov.rt.traces()[-1].endpoint == "unmetered"


def test_offline_daemon_needs_no_key(tmp_path: Path) -> None:
    with TempDaemon(offline=True, env={"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}) as d:
        out = run_agent(d, agent_script(tmp_path, "both.py", BOTH_SDKS), budget=1.0)
        assert '"raw_status": 200' in out
        assert len(d.rt.traces()) == 5 and all(t.cost_usd > 0 for t in d.rt.traces())


def test_header_names_in_any_case_are_read_and_forwarded(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """HTTP header names are case-insensitive: a client writing `Authorization` and
    `X-Custom-Flag` (http.client sends names as given) is authenticated, and its own
    headers reach the provider, under the lower-case names the router reads them by
    (the daemon's server lower-cases them as it parses; the router relies on it)."""
    _, token = token_agent(gov, tmp_path, budget=1.0)
    url = urlsplit(gov.router_url)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/chat/completions", skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("X-Custom-Flag", "On")
        conn.putheader("Accept-Encoding", "gzip")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body.encode())
        answer = conn.getresponse()
        assert answer.status == 200, answer.read()[:300]
        assert json.loads(answer.read())["usage"]["prompt_tokens"] > 0
    finally:
        conn.close()
    sent = upstream.requests[-1].headers
    assert sent["x-custom-flag"] == "On"
    assert sent["authorization"] == f"Bearer {OPENAI_KEY}" and token not in json.dumps(sent)
    assert sent["accept-encoding"] == "identity"  # usage is read from the body


def test_a_detected_prompts_alert_is_read_as_soon_as_its_answer_is(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """A prompt and a whole reply whose PII is only detected are scanned after the answer
    went out (nothing about the call depends on the scan). Their alerts are published
    before the daemon serves anything else, so the events read right after each answer,
    without waiting, hold them: five calls back to back, upstream answering in 100 ms,
    each alert there at once."""
    _, token = token_agent(gov, tmp_path, budget=1.0, pii="detect")
    client = sdk_client(gov, token)
    upstream.latency = 0.1
    for i in range(5):
        prompt = f"call {i}: please write to jane{i}@example.com"
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        alerts = [e for e in gov.rt.events(limit=1000) if isinstance(e, PiiAlert)]
        for direction in ("request", "response"):  # the reply echoes the prompt
            these = [e for e in alerts if e.direction == direction]
            assert len(these) == i + 1, alerts
            assert these[-1].counts == {"EMAIL": 1} and these[-1].action == "detected"
