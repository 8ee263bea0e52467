"""A model with no known price, end to end: let through (cost unknown) for an agent with no
budget in any scope, refused as soon as one of its scopes has a budget. Real daemon, the
real SDKs, the fake upstream over TCP answering a model genai-prices does not know."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import msgspec
import openai
import pytest
from openai.types.chat import ChatCompletion

from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import sdk_client, token_agent

UNPRICED = "acme-llm-1"


def ask(c: openai.OpenAI, model: str = UNPRICED) -> ChatCompletion:
    return c.chat.completions.create(
        model=model,
        max_tokens=20,
        messages=[{"role": "user", "content": "what does an unpriced call cost?"}],
    )


def test_no_budget_anywhere_lets_an_unpriced_model_through_with_an_unknown_cost(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    upstream.latency = 0.05
    agent_id, token = token_agent(gov, tmp_path)
    c = sdk_client(gov, token)
    request.addfinalizer(c.close)
    assert ask(c).choices[0].message.content
    stream = c.chat.completions.create(
        model=UNPRICED,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "and streamed?"}],
    )
    assert any(chunk.usage for chunk in stream)
    assert ask(c, model="gpt-4o-mini").usage is not None

    traces = gov.rt.traces(agent=agent_id)
    unpriced = [t for t in traces if t.model == UNPRICED]
    assert len(unpriced) == 2 and all(t.status_code == 200 for t in unpriced)
    assert all(t.cost_usd is None for t in unpriced)  # unknown, not $0
    assert all(t.input_tokens > 0 and t.output_tokens > 0 for t in unpriced)
    [known] = [t for t in traces if t.model.startswith("gpt-4o-mini")]
    assert known.cost_usd is not None and known.cost_usd > 0

    # Spend and usage count the known costs only; the unpriced calls still count as calls.
    assert gov.rt.get_agent(agent_id).spent_usd == pytest.approx(known.cost_usd)
    by_model = {row.key: row for row in gov.rt.usage(by="model").rows}
    assert by_model[UNPRICED].llm_calls == 2 and by_model[UNPRICED].cost_usd == 0
    assert by_model[UNPRICED].unpriced_calls == 2  # $0 here means "unknown", and says so
    assert by_model["gpt-4o-mini"].unpriced_calls == 0
    assert by_model[UNPRICED].output_tokens == sum(t.output_tokens for t in unpriced)
    assert gov.rt.usage(by="agent").total_usd == pytest.approx(known.cost_usd)

    # Announced once per model (per daemon run), not once per call.
    found = [e for e in gov.rt.events(limit=1000) if e.kind == "PriceUnknown"]
    assert len(found) == 1, [msgspec.to_builtins(e) for e in found]
    assert found[0].agent_id == agent_id
    assert (found[0].provider, found[0].model) == ("openai", UNPRICED)

    # The CLI shows the unknown cost, it does not crash on it.
    shown = gov.cli("traces", "--agent", agent_id)
    assert shown.returncode == 0, shown.stderr
    assert sum("unknown" in line for line in shown.stdout.splitlines() if UNPRICED in line) == 2
    usage = gov.cli("usage", "--by", "model")
    assert usage.returncode == 0 and UNPRICED in usage.stdout, usage.stderr
    assert "2 unpriced" in next(line for line in usage.stdout.splitlines() if UNPRICED in line)
    as_json = gov.cli("traces", "--agent", agent_id, "--json")
    costs = [t["cost_usd"] for t in json.loads(as_json.stdout) if t["model"] == UNPRICED]
    assert costs == [None, None]


def test_the_anthropic_sdk_too(gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path) -> None:
    agent_id, token = token_agent(gov, tmp_path)
    a = anthropic.Anthropic(base_url=gov.router_url, api_key=token, max_retries=0)
    try:
        for _ in range(2):
            answer = a.messages.create(
                model="acme-claude-1",
                max_tokens=20,
                messages=[{"role": "user", "content": "hello"}],
            )
            assert answer.usage.output_tokens > 0
    finally:
        a.close()
    traces = gov.rt.traces(agent=agent_id)
    assert [t.cost_usd for t in traces] == [None, None]
    found = [e for e in gov.rt.events(limit=1000) if e.kind == "PriceUnknown"]
    assert [(e.provider, e.model) for e in found] == [("anthropic", "acme-claude-1")]


@pytest.mark.parametrize("where", ["agent", "project", "global"])
def test_a_budget_in_any_scope_refuses_an_unpriced_model(
    gov: TempDaemon,
    upstream: FakeUpstream,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    where: str,
) -> None:
    agent_id, token = token_agent(gov, tmp_path, project="crew")
    scope = {"agent": f"agent:{agent_id}", "project": "project:crew", "global": "global"}[where]
    gov.rt.set_limits(scope, budget_usd=5.0)
    c = sdk_client(gov, token)
    request.addfinalizer(c.close)
    with pytest.raises(openai.BadRequestError) as refused:
        ask(c)
    body = refused.value.body
    assert isinstance(body, dict) and body["code"] == "model_price_unknown"
    message = refused.value.message
    assert UNPRICED in message and scope in message and "prices.toml" in message
    assert f'[models."{UNPRICED}"]' in message  # how to price it, ready to paste
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert [r for r in upstream.requests if r.path == "/v1/chat/completions"] == []
    assert "PriceUnknown" not in [e.kind for e in gov.rt.events(limit=1000)]
    # With the budget gone from every scope, the same call goes through.
    gov.rt.set_limits(scope, budget_usd=None)
    ask(c)
    wait_until(lambda: len(gov.rt.traces(agent=agent_id)) == 2, timeout=5)
    assert gov.rt.traces(agent=agent_id)[-1].cost_usd is None


def test_rate_limits_still_apply_to_unpriced_calls(
    gov: TempDaemon, upstream: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _, token = token_agent(gov, tmp_path, rpm=1)
    c = sdk_client(gov, token)
    request.addfinalizer(c.close)
    ask(c)
    with pytest.raises(openai.RateLimitError) as limited:
        ask(c)
    assert limited.value.response.headers.get("retry-after")
