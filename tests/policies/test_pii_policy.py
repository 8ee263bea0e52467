"""PiiPolicy through real flows and provider adapters: detect, redact, block, streams."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ironrt.governance.flow import Flow, StreamEvent
from ironrt.policies.pii import PiiCallState, PiiPolicy
from ironrt.protocol import PiiMode
from ironrt.protocol.events import BASE_FIELDS
from ironrt.testing import tevent, tflow

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"


def chat_flow(mode: PiiMode, *messages: dict[str, Any], stream: bool = False) -> Flow:
    body = {"model": "gpt-4o-mini", "messages": list(messages), "stream": stream}
    return tflow(body=body, pii=mode)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def chunk(content: str | None = None, finish: str | None = None) -> StreamEvent:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return tevent({"id": "c1", "object": "chat.completion.chunk", "choices": [choice]})


def chat_text(events: list[StreamEvent]) -> str:
    return "".join(
        e.data["choices"][0]["delta"].get("content") or "" for e in events if e.data["choices"]
    )


def run_stream(policy: PiiPolicy, flow: Flow, events: list[StreamEvent]) -> list[StreamEvent]:
    out = [sent for ev in events for sent in policy.stream_event(flow, ev)]
    out += policy.stream_end(flow)
    policy.complete(flow)
    return out


def redacted_chat(*texts: str, stream: bool = False) -> tuple[PiiPolicy, Flow]:
    policy, flow = PiiPolicy(), chat_flow("redact", *map(user, texts), stream=stream)
    policy.request(flow)
    return policy, flow


def alerts(flow: Flow) -> list[dict[str, Any]]:
    """Each PiiAlert's own fields (not the ones every event has)."""
    own = [msgspec.to_builtins(e) for e in flow.events if e.kind == "PiiAlert"]
    return [{k: v for k, v in e.items() if k not in BASE_FIELDS and k != "kind"} for e in own]


# ---- off / detect / block -------------------------------------------------------------------


def test_off_returns_at_once() -> None:
    policy, flow = PiiPolicy(), chat_flow("off", user(f"mail {EMAIL}"))
    policy.request(flow)
    ev = chunk(f"mail {EMAIL}")
    assert policy.stream_event(flow, ev) == [ev]
    assert "pii" not in flow.metadata and flow.events == [] and not flow.body_changed


def test_detect_reports_types_where_and_counts_never_values() -> None:
    flow = chat_flow("detect", {"role": "system", "content": f"card {CARD}"}, user(f"{EMAIL} x"))
    PiiPolicy().request(flow)
    (alert,) = alerts(flow)
    assert alert["direction"] == "request" and alert["action"] == "detected"
    assert alert["count"] == 2 and alert["types"] == ["CARD", "EMAIL"]
    assert alert["findings"] == [
        {"type": "CARD", "where": "system", "count": 1},
        {"type": "EMAIL", "where": "prompt", "count": 1},
    ]
    assert EMAIL not in json.dumps(alert) and "4111" not in json.dumps(alert)


def test_detect_leaves_the_request_as_it_is_and_counts_on_the_agent() -> None:
    flow = chat_flow("detect", user(f"mail {EMAIL}"))
    PiiPolicy().request(flow)
    assert flow.body is not None and flow.body["messages"][0]["content"] == f"mail {EMAIL}"
    assert not flow.body_changed and flow.agent.pii_findings == 1


def test_detect_without_findings_emits_nothing() -> None:
    flow = chat_flow("detect", user("order ORD-2023-884412 shipped on 2023-10-14"))
    PiiPolicy().request(flow)
    assert flow.events == [] and flow.agent.pii_findings == 0


def test_block_refuses_with_a_non_retryable_400_naming_the_types() -> None:
    flow = chat_flow("block", user(f"mail {EMAIL}, card {CARD}"))
    PiiPolicy().request(flow)
    r = flow.refusal
    assert r is not None
    assert (r.status, r.retryable, r.type, r.code, r.policy) == (
        400,
        False,
        "invalid_request_error",
        "pii_blocked",
        "pii",
    )
    assert "CARD, EMAIL" in r.message and EMAIL not in r.message
    assert alerts(flow)[0]["action"] == "blocked"


def test_block_lets_a_clean_request_through() -> None:
    flow = chat_flow("block", user("hello"))
    PiiPolicy().request(flow)
    assert flow.refusal is None


# ---- redact: request ------------------------------------------------------------------------


def test_redact_replaces_findings_with_typed_placeholders() -> None:
    _, flow = redacted_chat(f"mail {EMAIL} or {EMAIL}, card {CARD}", "also b@c.io")
    assert flow.body is not None
    contents = [m["content"] for m in flow.body["messages"]]
    assert contents == ["mail [EMAIL_1] or [EMAIL_1], card [CARD_1]", "also [EMAIL_2]"]
    assert flow.body_changed and alerts(flow)[0]["action"] == "redacted"


def test_redact_covers_anthropic_tool_use_input_and_system() -> None:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "system": f"owner {EMAIL}",
        "messages": [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "send", "input": {"to": EMAIL}}
                ],
            }
        ],
    }
    flow = tflow("anthropic", body=body, pii="redact")
    PiiPolicy().request(flow)
    assert body["system"] == "owner [EMAIL_1]"
    assert body["messages"][0]["content"][0]["input"] == {"to": "[EMAIL_1]"}


def test_redacted_tool_call_arguments_stay_valid_json() -> None:
    function = {"name": "note", "arguments": json.dumps({"text": f"line\n{EMAIL}"})}
    call = {"id": "t", "type": "function", "function": function}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    flow = chat_flow("redact", user("go"), assistant)
    PiiPolicy().request(flow)
    assert json.loads(function["arguments"]) == {"text": "line\n[EMAIL_1]"}


def test_the_mode_is_read_once_per_call() -> None:
    policy, flow = redacted_chat(f"mail {EMAIL}", stream=True)
    flow.agent.pii = "off"  # changed on the running agent mid-call
    out = run_stream(policy, flow, [chunk("to [EMAIL_1]"), chunk(None, "stop")])
    assert chat_text(out) == f"to {EMAIL}"


# ---- redact: responses ----------------------------------------------------------------------


def test_redact_restores_placeholders_in_a_response() -> None:
    policy, flow = redacted_chat(f"mail {EMAIL}")
    body: dict[str, Any] = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "to [EMAIL_1]"}}]
    }
    assert policy.response(flow, body) is True
    assert body["choices"][0]["message"]["content"] == f"to {EMAIL}"


def test_redact_restores_tool_call_arguments() -> None:
    policy, flow = redacted_chat(f"mail {EMAIL}")
    function = {"name": "send", "arguments": '{"to": "[EMAIL_1]"}'}
    call = {"id": "t", "type": "function", "function": function}
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [call]}}]}
    policy.response(flow, body)
    assert json.loads(function["arguments"]) == {"to": EMAIL}


def test_a_finding_the_model_made_is_redacted_and_reported() -> None:
    policy, flow = redacted_chat(f"mail {EMAIL}")
    body: dict[str, Any] = {
        "choices": [{"index": 0, "message": {"content": "[EMAIL_1], cc boss@corp.com"}}]
    }
    policy.response(flow, body)
    # The agent's own address comes back; the one the model made up does not get through.
    assert body["choices"][0]["message"]["content"] == f"{EMAIL}, cc [EMAIL_2]"
    response_alert = alerts(flow)[-1]
    assert (response_alert["direction"], response_alert["count"]) == ("response", 1)


def test_detect_counts_findings_in_a_response() -> None:
    policy, flow = PiiPolicy(), chat_flow("detect", user("hi"))
    policy.request(flow)
    body = {"choices": [{"index": 0, "message": {"content": f"card {CARD}"}}]}
    assert policy.response(flow, body) is False
    assert alerts(flow) == [
        {
            "direction": "response",
            "action": "detected",
            "actions": {"CARD": "detected"},
            "count": 1,
            "types": ["CARD"],
            "where": ["completion"],
            "counts": {"CARD": 1},
            "findings": [{"type": "CARD", "where": "completion", "count": 1}],
        }
    ]


# ---- streams --------------------------------------------------------------------------------


def test_a_placeholder_split_across_chunks_is_restored() -> None:
    policy, flow = redacted_chat(f"mail {EMAIL}", stream=True)
    out = run_stream(policy, flow, [chunk("to [EMA"), chunk("IL_1] now"), chunk(None, "stop")])
    assert chat_text(out) == f"to {EMAIL} now"
    assert all(e.data["choices"][0]["finish_reason"] is None for e in out[:-1])


def test_held_text_is_flushed_before_the_event_that_closes_its_channel() -> None:
    policy, flow = redacted_chat(f"mail {EMAIL}", stream=True)
    close = chunk(None, "stop")
    out = run_stream(policy, flow, [chunk("to [EMAIL_"), close])
    assert out[-1] is close and out[-2].data["id"] == "c1"
    assert [e.data["choices"][0]["delta"] for e in out[:-1]] == [
        {"content": "to "},
        {"content": "[EMAIL_"},
    ]


def test_a_private_key_restored_into_streamed_tool_arguments_keeps_them_valid_json() -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    policy, flow = redacted_chat(f"store this key:\n{key}\nplease", stream=True)

    def args(text: str) -> StreamEvent:
        call = {"index": 0, "function": {"arguments": text}}
        choice = {"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}
        return tevent({"id": "c1", "object": "chat.completion.chunk", "choices": [choice]})

    out = run_stream(policy, flow, [args('{"pem": "[SEC'), args('RET_1]"}'), chunk(None, "stop")])
    streamed = "".join(
        c["function"]["arguments"]
        for e in out
        for c in e.data["choices"][0]["delta"].get("tool_calls", ())
    )
    assert json.loads(streamed) == {"pem": key}


def test_stream_end_flushes_what_a_channel_still_holds() -> None:
    policy, flow = redacted_chat(f"mail {EMAIL}", stream=True)
    out = run_stream(policy, flow, [chunk("to [EMAIL_1")])
    assert chat_text(out) == "to [EMAIL_1"


def test_anthropic_stream_restores_text_and_tool_input_json() -> None:
    body = {"model": "claude-sonnet-4-5", "stream": True, "messages": [user(f"mail {EMAIL}")]}
    flow = tflow("anthropic", body=body, pii="redact")
    assert flow.stream
    policy = PiiPolicy()
    policy.request(flow)

    def delta(index: int, kind: str, field: str, text: str) -> StreamEvent:
        payload = {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": kind, field: text},
        }
        return tevent(payload)

    events = [
        delta(0, "text_delta", "text", "Sending to [EMAIL"),
        tevent({"type": "content_block_stop", "index": 0}),
        delta(1, "input_json_delta", "partial_json", '{"to": "[EM'),
        delta(1, "input_json_delta", "partial_json", 'AIL_1]"}'),
        tevent({"type": "content_block_stop", "index": 1}),
    ]
    out = run_stream(policy, flow, events)
    texts = [
        e.data["delta"].get("text", "") for e in out if e.data["type"] == "content_block_delta"
    ]
    parts = [e.data["delta"].get("partial_json", "") for e in out if "delta" in e.data]
    assert "".join(texts) == "Sending to [EMAIL"
    assert json.loads("".join(parts)) == {"to": EMAIL}
    assert [e.data["type"] for e in out][1:3] == ["content_block_delta", "content_block_stop"]


def test_findings_straddling_chunks_are_counted_once() -> None:
    policy, flow = PiiPolicy(), chat_flow("detect", user("hi"), stream=True)
    policy.request(flow)
    run_stream(policy, flow, [chunk("card 4111 11"), chunk("11 1111 1111"), chunk(". ok", "stop")])
    (alert,) = alerts(flow)
    assert (alert["count"], alert["types"], alert["where"]) == (1, ["CARD"], ["completion"])
    assert flow.agent.pii_findings == 1


def test_a_stream_that_broke_off_is_still_counted() -> None:
    policy, flow = PiiPolicy(), chat_flow("detect", user("hi"), stream=True)
    policy.request(flow)
    policy.stream_event(flow, chunk(f"mail {EMAIL}"))
    policy.complete(flow)  # no stream_end: the agent went away
    assert alerts(flow)[0]["count"] == 1


def test_responses_repeated_text_is_restored_but_not_counted_twice() -> None:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "stream": True, "input": f"mail {EMAIL}"}
    flow = tflow(endpoint="responses", body=body, pii="redact")
    policy = PiiPolicy()
    policy.request(flow)
    assert body["input"] == "mail [EMAIL_1]"
    common = {"item_id": "m1", "output_index": 0, "content_index": 0, "sequence_number": 1}
    text = "[EMAIL_1] ok b@c.io"
    delta_type, done_type = "response.output_text.delta", "response.output_text.done"
    events = [
        tevent({"type": delta_type, "delta": text, **common}),
        tevent({"type": done_type, "text": text, **common}),
    ]
    out = run_stream(policy, flow, events)
    streamed = "".join(e.data["delta"] for e in out if e.data["type"] == delta_type)
    done = next(e.data["text"] for e in out if e.data["type"] == done_type)
    assert streamed == done == f"{EMAIL} ok [EMAIL_2]"  # deltas and full text agree
    assert alerts(flow)[-1]["count"] == 1  # b@c.io, once


def test_call_state_is_kept_in_flow_metadata() -> None:
    _, flow = redacted_chat(f"mail {EMAIL}")
    state = flow.metadata["pii"]
    assert isinstance(state, PiiCallState)
    assert state.redacting and state.request == {("EMAIL", "prompt"): 1}
    assert state.plan.redact >= {"EMAIL", "PHONE", "SECRET"} and not state.plan.block


# ---- the router's awaited hooks -------------------------------------------------------------


async def test_the_stepped_path_redacts_and_restores_as_the_inline_one_does() -> None:
    """What the router awaits for large texts, forced with tiny steps: same placeholders,
    same restored answer."""
    texts = [f"mail {EMAIL}, card {CARD}", "and b@c.io, again " + EMAIL]
    inline, inline_flow = redacted_chat(*texts)
    stepped = PiiPolicy(inline_max=0, step_s=0, piece=5)
    flow = chat_flow("redact", *map(user, texts))
    await stepped.request_async(flow)
    assert flow.body == inline_flow.body and flow.body_changed
    answer = "to [EMAIL_1] and [EMAIL_2], card [CARD_1]"
    bodies = [{"choices": [{"index": 0, "message": {"content": answer}}]} for _ in range(2)]
    assert inline.response(inline_flow, bodies[0]) is True
    assert await stepped.response_async(flow, bodies[1]) is True
    assert bodies[0] == bodies[1]
    assert bodies[1]["choices"][0]["message"]["content"] == f"to {EMAIL} and b@c.io, card {CARD}"
