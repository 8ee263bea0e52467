"""The offline provider ends an agent's tool loop as a real model does: it calls the tool
when asked, and answers in text once the tool's result is back, on every API, streamed
or not. Through a real offline daemon with the real SDKs, plus the provider's own shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import msgspec
import openai
import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from ironrt.providers.offline import offline_response
from ironrt.tempdaemon import TempDaemon
from tests.router.helpers import sdk_client, token_agent

ASK = "Use the weather tool for Paris, then tell me what to wear"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CHAT_TOOLS: Any = [{"type": "function", "function": {"name": "weather", "parameters": SCHEMA}}]
RESPONSES_TOOLS: Any = [{"type": "function", "name": "weather", "parameters": SCHEMA}]
#: A loop that has not ended after this many model turns never will.
MAX_TURNS = 4


def weather(arguments: str) -> str:
    """The agent's side of the tool: what a real tool would return for the call."""
    return f"18 C and light rain in {msgspec.json.decode(arguments)['city']}"


def chat_loop(c: openai.OpenAI, *, stream: bool) -> tuple[list[str], ChatCompletion]:
    """An agent's tool loop over chat completions: run every tool call, send the results,
    until the model answers in text. Returns each turn's finish reason and the last answer."""
    messages: list[Any] = [{"role": "user", "content": ASK}]
    finishes: list[str] = []
    for _ in range(MAX_TURNS):
        if stream:
            with c.chat.completions.stream(
                model="gpt-4o-mini", messages=messages, tools=CHAT_TOOLS
            ) as events:
                for _event in events:
                    pass
                completion: ChatCompletion = events.get_final_completion()
        else:
            completion = c.chat.completions.create(
                model="gpt-4o-mini", messages=messages, tools=CHAT_TOOLS
            )
        choice = completion.choices[0]
        finishes.append(choice.finish_reason)
        calls = choice.message.tool_calls or []
        if not calls:
            return finishes, completion
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.function.name,  # type: ignore[union-attr]
                            "arguments": call.function.arguments,  # type: ignore[union-attr]
                        },
                    }
                    for call in calls
                ],
            }
        )
        for call in calls:
            result = weather(call.function.arguments)  # type: ignore[union-attr]
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    raise AssertionError(f"the tool loop did not end in {MAX_TURNS} turns: {finishes}")


def responses_loop(c: openai.OpenAI, *, stream: bool) -> tuple[list[str], Response]:
    """The same loop over the Responses API, sending the whole conversation each turn."""
    items: list[Any] = [{"role": "user", "content": ASK}]
    kinds: list[str] = []
    for _ in range(MAX_TURNS):
        response: Response
        if stream:
            with c.responses.stream(model="gpt-4o-mini", input=items, tools=RESPONSES_TOOLS) as s:
                for _event in s:
                    pass
                response = s.get_final_response()
        else:
            response = c.responses.create(model="gpt-4o-mini", input=items, tools=RESPONSES_TOOLS)
        calls = [item for item in response.output if item.type == "function_call"]
        kinds.append("function_call" if calls else "message")
        if not calls:
            return kinds, response
        for call in calls:
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                }
            )
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": call.call_id,
                    "output": weather(call.arguments),
                }
            )
    raise AssertionError(f"the tool loop did not end in {MAX_TURNS} turns: {kinds}")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_agents_tool_loop_ends_with_a_text_answer(
    daemon: TempDaemon, tmp_path: Path, request: pytest.FixtureRequest, stream: bool
) -> None:
    agent_id, token = token_agent(daemon, tmp_path)
    c = sdk_client(daemon, token)
    request.addfinalizer(c.close)

    finishes, answer = chat_loop(c, stream=stream)
    assert finishes == ["tool_calls", "stop"]
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls

    kinds, response = responses_loop(c, stream=stream)
    assert kinds == ["function_call", "message"]
    assert response.status == "completed" and response.output_text

    traces = daemon.rt.traces(agent=agent_id)
    assert len(traces) == 4 and all(t.status_code == 200 and t.cost_usd for t in traces)


def test_the_anthropic_loop_ends_too(
    daemon: TempDaemon, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _, token = token_agent(daemon, tmp_path)
    a = anthropic.Anthropic(base_url=daemon.router_url, api_key=token, max_retries=0)
    request.addfinalizer(a.close)
    tools: Any = [{"name": "weather", "input_schema": SCHEMA}]
    messages: list[Any] = [{"role": "user", "content": ASK}]
    first = a.messages.create(
        model="claude-haiku-4-5", max_tokens=200, tools=tools, messages=messages
    )
    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    messages.append({"role": "assistant", "content": [use.model_dump()]})
    # A tool result turn that also says "tool" is still the tool's result: answer it.
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}
    messages.append({"role": "user", "content": [result, {"type": "text", "text": "tool done"}]})
    final = a.messages.create(
        model="claude-haiku-4-5", max_tokens=200, tools=tools, messages=messages
    )
    assert final.stop_reason == "end_turn" and final.content[0].type == "text"


# ---- the provider's own answers, without a daemon ----------------------------------------


def test_a_tool_result_gets_text_but_a_new_user_turn_may_call_again() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    answered = [
        {"role": "user", "content": ASK},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    ]
    body = {"model": "gpt-4o-mini", "tools": CHAT_TOOLS, "messages": answered}
    text = ChatCompletion.model_validate_json(
        offline_response("openai", "chat.completions", body).body
    )
    assert text.choices[0].finish_reason == "stop" and text.choices[0].message.content
    again = {**body, "messages": [*answered, {"role": "user", "content": "now the tool again"}]}
    called = ChatCompletion.model_validate_json(
        offline_response("openai", "chat.completions", again).body
    )
    assert called.choices[0].finish_reason == "tool_calls"

    output = {"type": "function_call_output", "call_id": "call_1", "output": "18 C"}
    items = [{"role": "user", "content": ASK}, output]
    resp = {"model": "gpt-4o-mini", "tools": RESPONSES_TOOLS, "input": items}
    response = Response.model_validate_json(offline_response("openai", "responses", resp).body)
    assert [item.type for item in response.output] == ["message"]

    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"}
    msg = {
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "tools": [{"name": "weather", "input_schema": SCHEMA}],
        "messages": [{"role": "user", "content": [result, {"type": "text", "text": "tool?"}]}],
    }
    message = Message.model_validate_json(offline_response("anthropic", "messages", msg).body)
    assert message.stop_reason == "end_turn"
