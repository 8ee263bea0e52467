"""PII in tool calls, redact mode, end to end: OpenAI chat completions and the Responses
API, streamed and not, request and response side, through a real daemon's router, the real
`openai` SDK and the fake upstream over TCP.

How the model is scripted: the fake upstream answers with the offline provider, which
calls the first declared tool with arguments made from the tool's JSON schema (a
property's `enum` value when it has one) and streams them 8 characters a delta. The router
never rewrites tool definitions, so what a test puts in the schema is what the model
"writes" in its tool call: PII of its own, or a placeholder the request was issued.
Replies the offline provider never gives (a legacy `function_call`, a
`response.output_item.added` that already carries arguments, a text starting with a
placeholder) are scripted whole, from the offline provider's own events reshaped
(`ScriptedUpstream`).

Every call below comes from one agent in `redact` mode. Its request always holds the
agent's own email and private keys, so they are `[EMAIL_1]`, `[SECRET_1]` and
`[SECRET_2]`, and what the model produces itself is numbered after them (`[EMAIL_2]`,
`[PHONE_1]`, `[CARD_1]`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import openai
import pytest

from ironrt.providers.offline import offline_response
from ironrt.tempdaemon import TempDaemon, wait_until
from ironrt.testing import FakeUpstream
from tests.router.helpers import governed_env, sdk_client, token_agent

#: The agent's own values, sent in every request: restored into JSON, the key's newlines
#: and the `.env` key's backslashes must be escaped.
EMAIL = "jane.doe@example.com"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
ENV_KEY = KEY.replace("\n", "\\n").replace("MIIEvQ", "MIIBOg")
PROMPT = f'Use the tool. Mail {EMAIL}; my key:\n{KEY}\nand in my .env: KEY="{ENV_KEY}"'
#: PII the model produces itself.
MODEL_EMAIL = "bob.smith@example.org"
PHONE = "+44 20 7946 0018"
CARD = "4111 1111 1111 1111"
NOVEL = f"mail {MODEL_EMAIL}, call {PHONE}, card {CARD}"
NOVEL_REDACTED = "mail [EMAIL_2], call [PHONE_1], card [CARD_1]"
#: JSON escapes (`\n`, `\"`) right next to PII the model produces, and text that is not
#: ASCII: the arguments the model streams hold `line\nbob.smith@...`.
ESCAPED = f'line\n{MODEL_EMAIL}\nphone {PHONE} "{CARD}" café'
ESCAPED_REDACTED = 'line\n[EMAIL_2]\nphone [PHONE_1] "[CARD_1]" café'
#: What the agent must never see (the model's PII), and the upstream neither (all of it).
MODEL_RAW = (MODEL_EMAIL, PHONE, CARD, "4111", "7946")
RAW = (EMAIL, "MIIEvQ", "MIIBOg", *MODEL_RAW)
MODEL = "gpt-4o-mini"


# ---- the upstream: the offline provider, plus whole scripted replies ---------------------------


class ScriptedUpstream(FakeUpstream):
    """The fake upstream; a reply queued with `script` answers the next API request instead
    of the offline provider's (the request is logged all the same)."""

    def __init__(self) -> None:
        super().__init__()
        self._scripts: deque[tuple[bytes | None, list[bytes] | None]] = deque()

    def script(self, *, body: Any = None, events: list[bytes] | None = None) -> None:
        self._scripts.append((None if body is None else json.dumps(body).encode(), events))

    def clear_scripts(self) -> None:
        self._scripts.clear()

    async def _api(self, scope: Any, raw: bytes, send: Any) -> None:
        try:
            body, events = self._scripts.popleft()
        except IndexError:
            await super()._api(scope, raw, send)
            return

        async def discard(message: Any) -> None:
            return None

        await super()._api(scope, raw, discard)  # logs the request as for any other
        kind = b"application/json" if events is None else b"text/event-stream"
        headers = [(b"content-type", kind)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in [body or b""] if events is None else events:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def sse_data(raw: bytes) -> tuple[str | None, Any]:
    """(event name, decoded data) of one offline SSE event; data None for `[DONE]`."""
    event, data = None, None
    for line in raw.decode().splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and line[6:] != "[DONE]":
            data = json.loads(line[6:])
    return event, data


# ---- what the model writes --------------------------------------------------------------------


def schema(args: dict[str, str]) -> dict[str, Any]:
    props = {name: {"type": "string", "enum": [value]} for name, value in args.items()}
    return {"type": "object", "properties": props}


def chat_tool(args: dict[str, str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "save", "parameters": schema(args)}}


def responses_tool(args: dict[str, str]) -> dict[str, Any]:
    return {"type": "function", "name": "save", "parameters": schema(args)}


def chat_body(args: dict[str, str], **more: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": PROMPT}]
    return {"model": MODEL, "messages": messages, "tools": [chat_tool(args)], **more}


def upstream_pieces(args: dict[str, str]) -> list[str]:
    """The argument deltas the upstream streams for a call of a tool made by `schema(args)`
    (the offline provider's own reply, as the fake upstream sends it)."""
    reply = offline_response("openai", "chat.completions", chat_body(args, stream=True))
    assert reply.events is not None
    pieces: list[str] = []
    for raw in reply.events:
        _, data = sse_data(raw)
        for choice in (data or {}).get("choices", ()):
            for call in choice["delta"].get("tool_calls") or ():
                pieces.append(call["function"]["arguments"])
    return [p for p in pieces if p]


def split_at(
    make: Callable[[str], dict[str, str]],
    cut: str,
    pieces: Callable[[dict[str, str]], list[str]] = upstream_pieces,
) -> tuple[dict[str, str], str]:
    """`make(padding)`, padded so that one streamed delta ends with `cut` (`[EMA`): the
    rest of what follows it comes in the next delta. Returns the arguments and padding."""
    for n in range(8):
        args = make(" " * n)
        if any(piece.endswith(cut) for piece in pieces(args)):
            return args, " " * n
    raise AssertionError(f"no padding splits the arguments after {cut!r}")


def assert_nothing_raw(*texts: str, raw: tuple[str, ...] = MODEL_RAW) -> None:
    for text in texts:
        for value in raw:
            assert value not in text, (value, text)


# ---- one daemon, one redacting agent ------------------------------------------------------------


@pytest.fixture(scope="module")
def up() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_script_left(up: ScriptedUpstream) -> Iterator[None]:
    """A test that failed before its call left its script: the next one never sees it."""
    yield
    up.clear_scripts()


@pytest.fixture(scope="module")
def d(up: ScriptedUpstream) -> Iterator[TempDaemon]:
    with TempDaemon(offline=False, env=governed_env(up.url)) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def client(d: TempDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    _, token = token_agent(d, tmp_path_factory.mktemp("agent"), pii="redact")
    with sdk_client(d, token) as c:
        yield c


def sent(up: FakeUpstream) -> str:
    """The last request the upstream received, as JSON text, tool definitions left out
    (they hold what the model is to write)."""
    body = {k: v for k, v in up.requests[-1].body.items() if k != "tools"}
    text = json.dumps(body)
    assert all(f"[{p}]" in text for p in ("EMAIL_1", "SECRET_1", "SECRET_2"))  # redacted
    assert_nothing_raw(text, raw=RAW)
    return text


# ---- chat completions, streamed ------------------------------------------------------------------


def stream_chat(client: openai.OpenAI, body: dict[str, Any]) -> tuple[dict[int, str], int]:
    """The tool-call arguments the agent accumulates per index, and how many deltas."""
    args: dict[int, str] = {}
    deltas = 0
    for chunk in client.chat.completions.create(**body, stream=True):
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                if call.function and call.function.arguments:
                    assert_nothing_raw(call.function.arguments)
                    args[call.index] = args.get(call.index, "") + call.function.arguments
                    deltas += 1
    return args, deltas


def test_chat_stream_redacts_pii_the_model_put_in_tool_arguments(
    up: ScriptedUpstream, d: TempDaemon, client: openai.OpenAI
) -> None:
    args = {"note": NOVEL}
    assert all(len(piece) < len(PHONE) for piece in upstream_pieces(args))  # all straddle
    got, deltas = stream_chat(client, chat_body(args))
    assert deltas > 5
    assert json.loads(got[0]) == {"note": NOVEL_REDACTED}
    sent(up)

    def counted() -> bool:
        alerts = [msgspec.to_builtins(e) for e in d.rt.events(limit=1000) if e.kind == "PiiAlert"]
        findings = [f for a in alerts if a["direction"] == "response" for f in a["findings"]]
        return {"type": "CARD", "where": "tool_arguments", "count": 1} in findings

    wait_until(counted, timeout=5)


KEYS = {"key": "[SECRET_1]", "env": "[SECRET_2]"}
KEYS_SEEN = {"key": KEY, "env": ENV_KEY}


def test_chat_stream_gives_the_agent_its_own_values_back_json_escaped(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    args, pad = split_at(lambda pad: {"to": pad + "[EMAIL_1]", **KEYS}, "[EMA")
    got, _ = stream_chat(client, chat_body(args))
    assert json.loads(got[0]) == {"to": pad + EMAIL, **KEYS_SEEN}  # escaped, or invalid
    sent(up)


def test_chat_stream_redacts_pii_next_to_json_escapes(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    got, _ = stream_chat(client, chat_body({"note": ESCAPED}))
    assert json.loads(got[0]) == {"note": ESCAPED_REDACTED}


def chat_events(
    args: dict[str, str], reshape: Callable[[dict[str, Any], dict[str, Any]], None], finish: str
) -> list[bytes]:
    """The offline tool-call stream for `args`, each tool-call delta reshaped in its chunk's
    delta by `reshape(delta, call)`, ending with `finish`."""
    body = chat_body(args, stream=True, stream_options={"include_usage": True})
    reply = offline_response("openai", "chat.completions", body)
    assert reply.events is not None
    events: list[bytes] = []
    for raw in reply.events:
        _, data = sse_data(raw)
        for choice in (data or {}).get("choices", ()):
            for call in choice["delta"].pop("tool_calls", None) or ():
                reshape(choice["delta"], call)
            if choice["finish_reason"] == "tool_calls":
                choice["finish_reason"] = finish
        events.append(raw if data is None else sse(data))
    return events


def as_legacy(delta: dict[str, Any], call: dict[str, Any]) -> None:
    delta["function_call"] = call["function"]


def as_custom(delta: dict[str, Any], call: dict[str, Any]) -> None:
    function = call.pop("function")
    call["type"] = "custom"
    call["custom"] = {"input": function["arguments"]}
    if "name" in function:
        call["custom"]["name"] = function["name"]
    delta["tool_calls"] = [call]


def test_chat_stream_legacy_function_call(up: ScriptedUpstream, client: openai.OpenAI) -> None:
    args, pad = split_at(lambda pad: {"note": NOVEL, "to": pad + "[EMAIL_1]"}, "[EMA")
    up.script(events=chat_events(args, as_legacy, "function_call"))
    text = ""
    for chunk in client.chat.completions.create(**chat_body(args), stream=True):
        for choice in chunk.choices:
            if choice.delta.function_call and choice.delta.function_call.arguments:
                assert_nothing_raw(choice.delta.function_call.arguments)
                text += choice.delta.function_call.arguments
    assert json.loads(text) == {"note": NOVEL_REDACTED, "to": pad + EMAIL}
    sent(up)


def test_chat_stream_custom_tool_input(up: ScriptedUpstream, client: openai.OpenAI) -> None:
    """A custom tool's input (`tool_calls[].custom.input`), which the SDK's types do not
    know yet (they keep it as a plain dict)."""
    args, pad = split_at(lambda pad: {"note": NOVEL, "to": pad + "[EMAIL_1]"}, "[EMA")
    up.script(events=chat_events(args, as_custom, "tool_calls"))
    text = ""
    for chunk in client.chat.completions.create(**chat_body(args), stream=True):
        for choice in chunk.to_dict()["choices"]:
            for call in choice["delta"].get("tool_calls") or ():
                assert_nothing_raw(call["custom"]["input"])
                text += call["custom"]["input"]
    assert json.loads(text) == {"note": NOVEL_REDACTED, "to": pad + EMAIL}
    sent(up)


# ---- chat completions, not streamed --------------------------------------------------------------

EVERYTHING = {"note": ESCAPED, "to": "[EMAIL_1]", **KEYS}
EVERYTHING_SEEN = {"note": ESCAPED_REDACTED, "to": EMAIL, **KEYS_SEEN}


def test_chat_tool_calls_are_redacted_and_restored(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    reply = client.chat.completions.create(**chat_body(EVERYTHING))
    [call] = reply.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert_nothing_raw(call.function.arguments)
    assert json.loads(call.function.arguments) == EVERYTHING_SEEN
    sent(up)


def test_chat_legacy_function_call_is_redacted_and_restored(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    body = json.loads(offline_response("openai", "chat.completions", chat_body(EVERYTHING)).body)
    choice = body["choices"][0]
    choice["message"]["function_call"] = choice["message"].pop("tool_calls")[0]["function"]
    choice["finish_reason"] = "function_call"
    up.script(body=body)
    reply = client.chat.completions.create(**chat_body(EVERYTHING))
    function = reply.choices[0].message.function_call
    assert function is not None and function.name == "save"
    assert_nothing_raw(function.arguments)
    assert json.loads(function.arguments) == EVERYTHING_SEEN
    sent(up)


def test_chat_custom_tool_input_is_redacted_and_restored(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    """Free text, not JSON: a value restored into it is not escaped."""
    body = json.loads(offline_response("openai", "chat.completions", chat_body(EVERYTHING)).body)
    message = body["choices"][0]["message"]
    [call] = message.pop("tool_calls")
    text = f"key [SECRET_1] for [EMAIL_1]; {ESCAPED}"
    message["tool_calls"] = [
        {"id": call["id"], "type": "custom", "custom": {"name": "save", "input": text}}
    ]
    up.script(body=body)
    reply = client.chat.completions.create(**chat_body(EVERYTHING))
    [got] = reply.to_dict()["choices"][0]["message"]["tool_calls"]
    assert got["custom"]["input"] == f"key {KEY} for {EMAIL}; {ESCAPED_REDACTED}"
    sent(up)


# ---- Responses API ----------------------------------------------------------------------------


def responses_body(args: dict[str, str]) -> dict[str, Any]:
    return {"model": MODEL, "input": [{"role": "user", "content": PROMPT}],
            "tools": [responses_tool(args)]}  # fmt: skip


class ArgumentsSeen(msgspec.Struct):
    """Every place a streamed Responses function call shows its arguments to the agent."""

    added: list[str] = msgspec.field(default_factory=list)
    deltas: list[str] = msgspec.field(default_factory=list)
    done: list[str] = msgspec.field(default_factory=list)
    item_done: list[str] = msgspec.field(default_factory=list)
    completed: list[str] = msgspec.field(default_factory=list)

    @property
    def streamed(self) -> str:
        """What the SDK's stream accumulator builds: the added item's, then the deltas."""
        return "".join(self.added) + "".join(self.deltas)


#: Output items of tool calls the model writes, and the events streaming their arguments.
CALL_ITEMS = ("function_call", "mcp_call")
ARGUMENTS_DELTA = ("response.function_call_arguments.delta", "response.mcp_call_arguments.delta")
ARGUMENTS_DONE = ("response.function_call_arguments.done", "response.mcp_call_arguments.done")


def stream_responses(client: openai.OpenAI, body: dict[str, Any]) -> ArgumentsSeen:
    seen = ArgumentsSeen()
    for event in client.responses.create(**body, stream=True):
        item = getattr(event, "item", None)
        if event.type == "response.output_item.added" and item.type in CALL_ITEMS:
            seen.added.append(item.arguments)
        elif event.type in ARGUMENTS_DELTA:
            seen.deltas.append(event.delta)  # type: ignore[union-attr]
        elif event.type in ARGUMENTS_DONE:
            seen.done.append(event.arguments)  # type: ignore[union-attr]
        elif event.type == "response.output_item.done" and item.type in CALL_ITEMS:
            seen.item_done.append(item.arguments)
        elif event.type == "response.completed":
            output = event.response.output
            seen.completed += [o.arguments for o in output if o.type in CALL_ITEMS]
    assert_nothing_raw(*seen.added, *seen.deltas, *seen.done, *seen.item_done, *seen.completed)
    return seen


def test_responses_stream_deltas_and_repeats_agree(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    args, pad = split_at(lambda pad: {"note": NOVEL, "to": pad + "[EMAIL_1]", **KEYS}, "[EMA")
    seen = stream_responses(client, responses_body(args))
    assert len(seen.deltas) > 5
    [full] = seen.done
    assert seen.streamed == full and seen.item_done == [full] and seen.completed == [full]
    assert json.loads(full) == {"note": NOVEL_REDACTED, "to": pad + EMAIL, **KEYS_SEEN}
    sent(up)


def test_responses_stream_redacts_pii_next_to_json_escapes(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    seen = stream_responses(client, responses_body({"note": ESCAPED}))
    [full] = seen.done
    assert seen.streamed == full and seen.item_done == [full] and seen.completed == [full]
    assert json.loads(full) == {"note": ESCAPED_REDACTED}


def test_responses_stream_output_item_added_carrying_arguments(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    """A provider may send the first arguments in `response.output_item.added` (OpenAI
    sends them empty): they are redacted there, and the rest in the deltas after it."""
    body = responses_body({"note": NOVEL, "to": "[EMAIL_1]"})
    reply = offline_response("openai", "responses", {**body, "stream": True})
    assert reply.events is not None
    events = [sse_data(raw) for raw in reply.events]
    deltas = [i for i, (name, _) in enumerate(events) if name and name.endswith("arguments.delta")]
    held = deltas[: len(deltas) // 2]  # `{"note":"mail bob.smith@exam` and so on
    added = next(data for name, data in events if name == "response.output_item.added")
    added["item"]["arguments"] = "".join(events[i][1]["delta"] for i in held)
    assert MODEL_EMAIL[:9] in added["item"]["arguments"]  # PII starts in the added item
    up.script(events=[sse(data, name) for i, (name, data) in enumerate(events) if i not in held])
    seen = stream_responses(client, body)
    [full] = seen.done
    assert seen.streamed == full and seen.item_done == [full] and seen.completed == [full]
    assert json.loads(full) == {"note": NOVEL_REDACTED, "to": EMAIL}
    sent(up)


def as_mcp(name: str | None, data: Any) -> tuple[str | None, Any]:
    """An offline function-call stream event as the same event of an MCP call."""
    name = name and name.replace("function_call_arguments", "mcp_call_arguments")
    items = [data.get("item"), *data.get("response", {}).get("output", [])]
    for item in items:
        if item and item["type"] == "function_call":
            del item["call_id"]
            item.update(type="mcp_call", id="mcp_1", server_label="crm", output=None)
    if "item_id" in data:
        data.update(type=name, item_id="mcp_1")
    return name, data


def test_responses_stream_mcp_call_arguments(up: ScriptedUpstream, client: openai.OpenAI) -> None:
    """An MCP call runs upstream, but its arguments, written by the model, reach the agent
    in `response.mcp_call_arguments.*` events and in the items."""
    args, pad = split_at(lambda pad: {"note": NOVEL, "to": pad + "[EMAIL_1]", **KEYS}, "[EMA")
    body = responses_body(args)
    reply = offline_response("openai", "responses", {**body, "stream": True})
    assert reply.events is not None
    up.script(events=[sse(*reversed(as_mcp(*sse_data(raw)))) for raw in reply.events])
    seen = stream_responses(client, body)
    assert len(seen.deltas) > 5
    [full] = seen.done
    assert seen.streamed == full and seen.item_done == [full] and seen.completed == [full]
    assert json.loads(full) == {"note": NOVEL_REDACTED, "to": pad + EMAIL, **KEYS_SEEN}
    sent(up)


def test_responses_function_call_arguments_are_redacted_and_restored(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    reply = client.responses.create(**responses_body(EVERYTHING))
    [call] = [o for o in reply.output if o.type == "function_call"]
    assert_nothing_raw(call.arguments)
    assert json.loads(call.arguments) == EVERYTHING_SEEN
    sent(up)


def text_events(pieces: list[str]) -> list[bytes]:
    """A streamed Responses message: the offline provider's events with `pieces` as the
    text deltas and their join as every repeat of the text."""
    body = {"model": MODEL, "input": "hello", "stream": True}
    reply = offline_response("openai", "responses", body)
    assert reply.events is not None
    text = "".join(pieces)
    out: list[bytes] = []
    for raw in reply.events:
        name, data = sse_data(raw)
        if name == "response.output_text.delta":
            out += [sse({**data, "delta": piece}, name) for piece in pieces]
            pieces = []  # the offline provider's other deltas are dropped
            continue
        if name == "response.output_text.done":
            data["text"] = text
        elif name == "response.content_part.done":
            data["part"]["text"] = text
        elif name == "response.output_item.done":
            data["item"]["content"][0]["text"] = text
        elif name == "response.completed":
            data["response"]["output"][0]["content"][0]["text"] = text
        out.append(sse(data, name))
    return out


def test_responses_text_repeats_agree_when_the_text_starts_with_a_placeholder(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    up.script(events=text_events(["[SEC", "RET_1] is", " your key"]))
    deltas: list[str] = []
    repeats: list[str] = []
    for event in client.responses.create(model=MODEL, input=PROMPT, stream=True):
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.output_text.done":
            repeats.append(event.text)
        elif event.type == "response.completed":
            repeats.append(event.response.output_text)
    assert "".join(deltas) == f"{KEY} is your key"
    assert repeats == ["".join(deltas)] * 2


# ---- the request side: tool calls and results in the history -----------------------------------

#: Arguments the agent sends back in its history, as JSON text with escapes (`\u00e9`,
#: `\n`, `\"`) next to the PII.
HISTORY_ARGS = json.dumps({"note": f'café\n{MODEL_EMAIL} "{PHONE}"'})
HISTORY_ARGS_SENT = {"note": 'café\n[EMAIL_2] "[PHONE_1]"'}
TOOL_RESULT = json.dumps({"card": CARD, "line": "ok"})
TOOL_RESULT_SENT = {"card": "[CARD_1]", "line": "ok"}


def test_chat_history_tool_calls_and_results_are_redacted(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    assert "\\u00e9" in HISTORY_ARGS and "\\n" in HISTORY_ARGS and '\\"' in HISTORY_ARGS
    function = {"name": "save", "arguments": HISTORY_ARGS}
    messages: list[Any] = [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": function}]},
        {"role": "tool", "tool_call_id": "call_1", "content": TOOL_RESULT},
        {"role": "assistant", "content": None, "function_call": function},
        {"role": "function", "name": "save", "content": [{"type": "text", "text": TOOL_RESULT}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_2", "type": "custom",
             "custom": {"name": "save", "input": f"call {PHONE} about {CARD}"}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "done"},
    ]  # fmt: skip
    reply = client.chat.completions.create(model=MODEL, messages=messages)
    assert reply.choices[0].message.content
    sent(up)
    history = up.requests[-1].body["messages"]
    assert json.loads(history[1]["tool_calls"][0]["function"]["arguments"]) == HISTORY_ARGS_SENT
    assert json.loads(history[2]["content"]) == TOOL_RESULT_SENT
    assert json.loads(history[3]["function_call"]["arguments"]) == HISTORY_ARGS_SENT
    assert json.loads(history[4]["content"][0]["text"]) == TOOL_RESULT_SENT
    assert history[5]["tool_calls"][0]["custom"]["input"] == "call [PHONE_1] about [CARD_1]"


def test_responses_history_function_calls_and_outputs_are_redacted(
    up: ScriptedUpstream, client: openai.OpenAI
) -> None:
    items: list[Any] = [
        {"role": "user", "content": PROMPT},
        {"type": "function_call", "call_id": "c1", "name": "save", "arguments": HISTORY_ARGS},
        {"type": "function_call_output", "call_id": "c1", "output": TOOL_RESULT},
        {"type": "function_call", "call_id": "c2", "name": "save", "arguments": HISTORY_ARGS},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": TOOL_RESULT}]},
        {"type": "mcp_call", "id": "mcp_1", "server_label": "crm", "name": "save",
         "arguments": HISTORY_ARGS, "output": TOOL_RESULT},
    ]  # fmt: skip
    reply = client.responses.create(model=MODEL, input=items)
    assert reply.output_text
    sent(up)
    history = up.requests[-1].body["input"]
    assert json.loads(history[1]["arguments"]) == HISTORY_ARGS_SENT
    assert json.loads(history[2]["output"]) == TOOL_RESULT_SENT
    assert json.loads(history[3]["arguments"]) == HISTORY_ARGS_SENT
    assert json.loads(history[4]["output"][0]["text"]) == TOOL_RESULT_SENT
    assert json.loads(history[5]["arguments"]) == HISTORY_ARGS_SENT
    assert json.loads(history[5]["output"]) == TOOL_RESULT_SENT
