"""The flow helpers of `ironrt.testing` build what the router builds: checked against the
router's own parser of bodies and of server-sent events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from ironrt.governance.ledger import Ledger
from ironrt.providers import ANTHROPIC, OPENAI
from ironrt.router.bodies import parse_request
from ironrt.router.sse import SSEParser
from ironrt.testing import tagent, tattempt, tevent, tflow


@pytest.mark.parametrize(
    ("provider", "endpoint"),
    [
        ("openai", "chat.completions"),
        ("openai", "responses"),
        ("openai", "embeddings"),
        ("anthropic", "messages"),
        ("anthropic", "messages.count_tokens"),
    ],
)
def test_a_flow_is_what_the_router_makes_of_its_body(provider: Any, endpoint: Any) -> None:
    flow = tflow(provider, endpoint)
    adapter = OPENAI if provider == "openai" else ANTHROPIC
    assert flow.adapter is adapter and flow.endpoint == endpoint
    assert flow.body is not None and adapter.request_problem(endpoint, flow.body) is None
    parsed = parse_request(adapter, endpoint, msgspec.json.encode(flow.body))
    assert (flow.model, flow.stream, flow.input_bound) == (
        parsed.model,
        parsed.stream,
        parsed.input_bound,
    )
    assert flow.model and flow.upstream == f"{provider}:{adapter.default_base_url}"


def test_defaults_per_provider() -> None:
    assert (tflow().endpoint, tflow().model) == ("chat.completions", "gpt-4o-mini")
    anthropic = tflow("anthropic")
    assert (anthropic.endpoint, anthropic.model) == ("messages", "claude-haiku-4-5")
    assert anthropic.body is not None and anthropic.body["max_tokens"] == 256


def test_a_given_body_is_kept_and_read_like_the_router_reads_it() -> None:
    body = {"model": "gpt-4.1", "messages": [], "stream": True}
    flow = tflow(body=body)
    assert flow.body is body and (flow.model, flow.stream) == ("gpt-4.1", True)
    assert tflow(stream=True, model="o4-mini").body == {
        "model": "o4-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }


def test_keywords_go_to_the_flow_or_to_the_agent() -> None:
    flow = tflow(pii="redact", on_budget="stop", rpm=5, committed=True, input_bound=7)
    assert (flow.agent.pii, flow.agent.on_budget) == ("redact", "stop")
    assert [s.key for s in flow.agent.scopes] == ["agent:a1", "global"]
    assert flow.agent.scopes[0].rpm == 5 and flow.committed and flow.input_bound == 7
    with pytest.raises(TypeError, match="no_such_setting"):
        tflow(no_such_setting=1)
    with pytest.raises(TypeError, match="pii"):
        tflow(agent=tagent(), pii="block")


def test_an_agent_from_a_ledger_shares_its_books() -> None:
    ledger = Ledger()
    agent = tagent("x", ledger=ledger, project="p", budget_usd=2.0)
    assert agent.scopes == (
        ledger.scope("agent:x"),
        ledger.scope("project:p"),
        ledger.scope("global"),
    )
    assert ledger.scope("agent:x").budget_usd == 2.0


@pytest.mark.parametrize(
    "data",
    [
        {"id": "c1", "object": "chat.completion.chunk", "choices": []},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "é"}},
        {"type": "response.output_text.delta", "delta": "hi"},
    ],
)
def test_an_event_is_the_wire_bytes_the_routers_parser_reads_back(data: dict[str, Any]) -> None:
    ev = tevent(data)
    (parsed,) = SSEParser().feed(ev.raw)
    assert (parsed.data, parsed.event, parsed.raw) == (data, data.get("type"), ev.raw)
    assert (ev.data, ev.event, ev.changed) == (data, data.get("type"), False)


def test_done_is_an_event_without_data() -> None:
    ev = tevent("[DONE]")
    (parsed,) = SSEParser().feed(ev.raw)
    assert parsed.data is None and ev.data is None and parsed.raw == ev.raw == b"data: [DONE]\n\n"


def test_an_attempt_has_a_status_or_a_failure() -> None:
    assert tattempt().ok and tattempt().status == 200
    assert (tattempt(503, number=2).status, tattempt(503, number=2).number) == (503, 2)
    failed = tattempt(failure="connect")
    assert (failed.status, failed.failure, failed.ok) == (None, "connect", False)
    with pytest.raises(ValueError):
        tattempt(500, failure="timeout")


def test_the_helpers_import_nothing_above_the_kernel() -> None:
    """A policy's unit test must stay a test of the policy: the helpers may use the
    kernel, the providers and the protocol, never the router or anything above it."""
    import ast

    import ironrt.testing_flows

    source = Path(ironrt.testing_flows.__file__).read_text()
    imported = {
        node.module or ""
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    ours = {name for name in imported if name.split(".")[0] == "ironrt"}
    allowed = ("ironrt.governance", "ironrt.providers", "ironrt.protocol")
    assert ours and all(name.startswith(allowed) for name in ours), sorted(ours)
