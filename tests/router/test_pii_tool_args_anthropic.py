"""PII in tool calls, redact mode, end to end: the Anthropic Messages API, streamed
(`input_json_delta`) and not (`tool_use.input`, an object), request and response side,
through a real daemon's router, the real `anthropic` SDK and the fake upstream over TCP.

The model is scripted as in `test_pii_tool_args` (the offline provider calls the declared
tool with its schema's `enum` values), and the agent's request holds the same email and
private keys, so they are `[EMAIL_1]`, `[SECRET_1]` and `[SECRET_2]`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from ironrt.providers import AnthropicAdapter
from ironrt.providers.offline import offline_response
from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.router.helpers import governed_env, token_agent
from tests.router.test_pii_tool_args import (
    CARD,
    EMAIL,
    ESCAPED,
    ESCAPED_REDACTED,
    EVERYTHING,
    EVERYTHING_SEEN,
    HISTORY_ARGS,
    HISTORY_ARGS_SENT,
    KEY,
    KEYS,
    KEYS_SEEN,
    MODEL_EMAIL,
    NOVEL,
    NOVEL_REDACTED,
    PHONE,
    PROMPT,
    TOOL_RESULT,
    TOOL_RESULT_SENT,
    assert_nothing_raw,
    schema,
    sent,
    split_at,
    sse_data,
)

MODEL = "claude-haiku-4-5"


def messages_body(args: dict[str, str]) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": PROMPT}],
        "tools": [{"name": "save", "input_schema": schema(args)}],
    }


def upstream_pieces(args: dict[str, str]) -> list[str]:
    """The `partial_json` deltas the upstream streams for a call of `schema(args)`'s tool."""
    reply = offline_response("anthropic", "messages", {**messages_body(args), "stream": True})
    assert reply.events is not None
    deltas = [sse_data(raw)[1].get("delta") or {} for raw in reply.events]
    return [d["partial_json"] for d in deltas if d.get("type") == "input_json_delta"]


@pytest.fixture(scope="module")
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def d(up: FakeUpstream) -> Iterator[TempDaemon]:
    with TempDaemon(offline=False, env=governed_env(up.url)) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def client(
    d: TempDaemon, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[anthropic.Anthropic]:
    _, token = token_agent(d, tmp_path_factory.mktemp("agent"), pii="redact")
    with anthropic.Anthropic(base_url=d.router_url, api_key=token, max_retries=0) as c:
        yield c


def stream_tool_input(client: anthropic.Anthropic, body: dict[str, Any]) -> tuple[str, Any]:
    """The streamed `partial_json` joined, and the input the SDK parsed from it (it parses
    the JSON at every delta, and raises if it ever stops being JSON)."""
    partial: list[str] = []
    with client.messages.stream(**body) as stream:
        for event in stream:
            if event.type == "input_json":
                assert_nothing_raw(event.partial_json)
                partial.append(event.partial_json)
        final = stream.get_final_message()
    [block] = [b for b in final.content if b.type == "tool_use"]
    assert len(partial) > 5
    return "".join(partial), block.input


def test_messages_stream_redacts_pii_the_model_put_in_tool_input(
    up: FakeUpstream, client: anthropic.Anthropic
) -> None:
    text, parsed = stream_tool_input(client, messages_body({"note": NOVEL}))
    assert json.loads(text) == parsed == {"note": NOVEL_REDACTED}
    sent(up)


def test_messages_stream_gives_the_agent_its_own_values_back_json_escaped(
    up: FakeUpstream, client: anthropic.Anthropic
) -> None:
    args, pad = split_at(lambda pad: {"to": pad + "[EMAIL_1]", **KEYS}, "[EMA", upstream_pieces)
    text, parsed = stream_tool_input(client, messages_body(args))
    assert json.loads(text) == parsed == {"to": pad + EMAIL, **KEYS_SEEN}
    sent(up)


def test_messages_stream_redacts_pii_next_to_json_escapes(
    up: FakeUpstream, client: anthropic.Anthropic
) -> None:
    # Before the fix the SDK itself raises: the partial JSON stops parsing.
    text, parsed = stream_tool_input(client, messages_body({"note": ESCAPED}))
    assert json.loads(text) == parsed == {"note": ESCAPED_REDACTED}


def test_messages_tool_use_input_is_redacted_and_restored(
    up: FakeUpstream, client: anthropic.Anthropic
) -> None:
    """`tool_use.input` is an object: its strings are redacted, the agent's values restored
    as they were (a private key with real newlines, not `\\n` escapes), also where a string
    starts with a placeholder."""
    args = {**EVERYTHING, "greeting": "[EMAIL_1] says hi", "nested": "[SECRET_1]"}
    reply = client.messages.create(**messages_body(args))
    [block] = [b for b in reply.content if b.type == "tool_use"]
    assert_nothing_raw(json.dumps(block.input))
    assert block.input == {**EVERYTHING_SEEN, "greeting": f"{EMAIL} says hi", "nested": KEY}
    sent(up)


def test_messages_history_tool_use_and_results_are_redacted(
    up: FakeUpstream, client: anthropic.Anthropic
) -> None:
    note = f'café\n{MODEL_EMAIL} "{PHONE}"'
    messages: list[Any] = [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "save", "input": {"note": note}},
            {"type": "tool_use", "id": "t2", "name": "save",
             "input": {"deep": [{"card": CARD}], "n": 1}},
            {"type": "server_tool_use", "id": "s1", "name": "web_search",
             "input": {"query": f"who is {MODEL_EMAIL}"}},
            {"type": "mcp_tool_use", "id": "m1", "name": "lookup", "server_name": "crm",
             "input": {"phone": PHONE}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": HISTORY_ARGS},
            {"type": "tool_result", "tool_use_id": "t2",
             "content": [{"type": "text", "text": TOOL_RESULT}]},
            {"type": "mcp_tool_result", "tool_use_id": "m1", "content": TOOL_RESULT},
        ]},
    ]  # fmt: skip
    reply = client.messages.create(model=MODEL, max_tokens=256, messages=messages)
    assert reply.content
    sent(up)
    history = up.requests[-1].body["messages"]
    uses, results = history[1]["content"], history[2]["content"]
    assert uses[0]["input"] == HISTORY_ARGS_SENT
    assert uses[1]["input"] == {"deep": [{"card": "[CARD_1]"}], "n": 1}
    assert json.loads(results[0]["content"]) == HISTORY_ARGS_SENT  # JSON escapes and all
    assert json.loads(results[1]["content"][0]["text"]) == TOOL_RESULT_SENT
    assert uses[2]["input"] == {"query": "who is [EMAIL_2]"}
    assert uses[3]["input"] == {"phone": "[PHONE_1]"}
    assert json.loads(results[2]["content"]) == TOOL_RESULT_SENT


def test_a_server_tool_input_in_a_response_is_one_json_text() -> None:
    """What the model wrote for a server tool (`server_tool_use`, `mcp_tool_use`) is read
    as its tool inputs are: one JSON text, the text its stream carries, decoded back when
    set. (The offline provider never calls server tools, hence no round trip here.)"""
    body: dict[str, Any] = {"content": [
        {"type": "server_tool_use", "id": "s1", "name": "web_search",
         "input": {"query": f"who is {MODEL_EMAIL}", "n": 2}},
        {"type": "mcp_tool_use", "id": "m1", "name": "f", "server_name": "crm", "input": {}},
    ]}  # fmt: skip
    search, mcp = AnthropicAdapter().response_texts("messages", body)
    assert (search.channel, search.where) == (("block", 0, "json"), "tool_arguments")
    assert json.loads(search.text) == body["content"][0]["input"] and mcp.text == "{}"
    search.set(search.text.replace(MODEL_EMAIL, "[EMAIL_1]\\n"))
    assert body["content"][0]["input"] == {"query": "who is [EMAIL_1]\n", "n": 2}
    with pytest.raises(ValueError):
        mcp.set("{")  # no longer JSON: the policy fails closed
