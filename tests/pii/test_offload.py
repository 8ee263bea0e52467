"""Large texts are checked in steps between turns of the event loop, with the same results.

Issue 10: three 15 MiB PII-dense prompts from one agent held the daemon's event loop, so
every other agent's calls and the control API, for ~10 s. The PII policy's `*_async`
hooks check a large text in steps (`ironrt/pii/steps.py`), yielding the loop between
them. Here: the stepped path gives what the inline one gives (findings, placeholders,
events, refusals), other tasks keep running while it works, and, through a real daemon,
the control socket keeps answering while a multi-MiB prompt or answer is checked.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironrt.governance.agent import AgentGovernance
from ironrt.governance.flow import Endpoint, Flow, StreamEvent
from ironrt.pii import find_pii
from ironrt.policies.pii import PiiPolicy
from ironrt.protocol import PiiAlert, PiiMode
from ironrt.providers.openai import OpenAIAdapter
from ironrt.router.sse import make_event
from ironrt.tempdaemon import TempDaemon
from tests.pii import texts
from tests.pii.splits import stepped
from tests.pii.test_stream import SAMPLES, fragments
from tests.router.helpers import token_agent

# ---- texts -----------------------------------------------------------------------------------

#: Fragments and the JSON escapes that separate words in tool arguments.
ESCAPES = ["\\n", '\\"', "\\\\", "\\u00e9", "\\u12", "\\"]
json_fragments = st.lists(
    st.one_of(fragments, st.sampled_from(ESCAPES)), min_size=1, max_size=6
).map("".join)
pieces = st.lists(st.integers(1, 40), min_size=1, max_size=6)


def dense_pii(size: int, seed: int = 7) -> str:
    return texts.dense_pii(size, SAMPLES, seed)


# ---- PieceScan: any steps give find_pii's findings ---------------------------------------------


@settings(max_examples=100, deadline=None)
@given(fragments, pieces)
def test_piece_scan_finds_what_find_pii_finds(text: str, sizes: list[int]) -> None:
    assert stepped(text, sizes, json_text=False) == find_pii(text)


@settings(max_examples=100, deadline=None)
@given(json_fragments, pieces)
def test_piece_scan_masks_json_escapes_as_find_pii_does(text: str, sizes: list[int]) -> None:
    assert stepped(text, sizes, json_text=True) == find_pii(text, json_text=True)


def test_piece_scan_of_a_large_text_in_adaptive_steps() -> None:
    text = dense_pii(300_000)
    assert stepped(text, [1024, 4096, 16384, 1], json_text=False) == find_pii(text)


# ---- the policy: stepped hooks give what the inline hooks give ---------------------------------


def inline_and_stepped(piece: int) -> tuple[PiiPolicy, PiiPolicy]:
    """The daemon's policy on small texts, and one that steps through any text by `piece`."""
    return PiiPolicy(), PiiPolicy(inline_max=0, step_s=0.0, piece=piece)


def run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return anyio.run(fn, *args)


def chat_body(texts: list[str], args: str | None, stream: bool = False) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": t} for t in texts]
    if args is not None:
        call = {"id": "t", "type": "function", "function": {"name": "f", "arguments": args}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    return {"model": "gpt-4o-mini", "messages": messages, "stream": stream}


def flow_of(mode: PiiMode, body: dict[str, Any], endpoint: Endpoint = "chat.completions") -> Flow:
    agent = AgentGovernance("a1", pii=mode)
    stream = bool(body.get("stream"))
    return Flow(agent=agent, adapter=OpenAIAdapter(), endpoint=endpoint, body=body, stream=stream)


def outcome(flow: Flow) -> tuple[Any, ...]:
    state = flow.metadata.get("pii")
    counts = (state.request, state.response) if state is not None else None
    return flow.body, flow.refusal, flow.events, counts, flow.agent.pii_findings


def tool_args(text: str) -> str:
    return json.dumps({"text": text, "more": [text[::-1]]})


modes = st.sampled_from(["detect", "redact", "block"])


@settings(max_examples=80, deadline=None)
@given(modes, st.lists(fragments, min_size=1, max_size=3), fragments, st.integers(1, 12))
def test_stepped_request_equals_inline(
    mode: PiiMode, texts: list[str], args: str, piece: int
) -> None:
    inline, stepped = inline_and_stepped(piece)
    body = chat_body(texts, tool_args(args))
    a, b = flow_of(mode, copy.deepcopy(body)), flow_of(mode, copy.deepcopy(body))
    inline.request(a)
    run(stepped.request_async, b)
    assert outcome(b) == outcome(a)


@settings(max_examples=80, deadline=None)
@given(modes, fragments, fragments, fragments, st.integers(1, 12))
def test_stepped_response_equals_inline(
    mode: PiiMode, prompt: str, answer: str, args: str, piece: int
) -> None:
    inline, stepped = inline_and_stepped(piece)
    body = chat_body([prompt, "[EMAIL_1] [PHONE_1] " + prompt], None)
    a, b = flow_of(mode, copy.deepcopy(body)), flow_of(mode, copy.deepcopy(body))
    inline.request(a)
    inline.request(b)  # the same placeholders on both sides
    call = {"id": "t", "type": "function", "function": {"name": "f", "arguments": tool_args(args)}}
    message = {"role": "assistant", "content": "[EMAIL_1] " + answer, "tool_calls": [call]}
    answer_body = {"choices": [{"index": 0, "message": message}]}
    got_a, got_b = copy.deepcopy(answer_body), copy.deepcopy(answer_body)
    changed_a = inline.response(a, got_a)
    changed_b = run(stepped.response_async, b, got_b)
    assert (changed_b, got_b, outcome(b)) == (changed_a, got_a, outcome(a))


def chunk(content: str | None, finish: str | None = None) -> StreamEvent:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return make_event({"id": "c1", "object": "chat.completion.chunk", "choices": [choice]})


def stream_out(policy: PiiPolicy, flow: Flow, events: list[StreamEvent], stepped: bool) -> Any:
    async def go() -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in events:
            if stepped:
                out += await policy.stream_event_async(flow, ev)
            else:
                out += policy.stream_event(flow, ev)
        out += policy.stream_end(flow)
        policy.complete(flow)
        flow.run_afterwards()  # as the router does once the agent has its answer
        return out

    out = run(go)
    return [(e.event, e.data, e.changed) for e in out], outcome(flow)


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(["detect", "redact"]),
    fragments,
    st.lists(fragments, min_size=1, max_size=4),
    st.integers(1, 12),
)
def test_stepped_stream_events_equal_inline(
    mode: PiiMode, prompt: str, deltas: list[str], piece: int
) -> None:
    inline, stepped = inline_and_stepped(piece)
    body = chat_body([prompt], None, stream=True)
    a, b, c = (flow_of(mode, copy.deepcopy(body)) for _ in range(3))
    for flow in (a, b, c):
        inline.request(flow)
    texts = ["[EMAIL_1] " + deltas[0], *deltas[1:]]

    def events() -> list[StreamEvent]:
        return [*(chunk(t) for t in texts), chunk(None, "stop")]

    expected = stream_out(inline, a, events(), False)
    assert stream_out(stepped, b, events(), True) == expected
    # The router's own path: the daemon's policy awaited, small events checked inline.
    assert stream_out(inline, c, events(), True) == expected


def pii_alerts(flow: Flow) -> list[PiiAlert]:
    return [e for e in flow.events if isinstance(e, PiiAlert)]


@settings(max_examples=60, deadline=None)
@given(st.integers(200, 9_000), st.integers(0, 2**16), st.lists(st.integers(1, 400), max_size=8))
def test_a_detecting_stream_is_counted_after_the_answer_as_if_scanned_as_it_came(
    size: int, seed: int, cuts: list[int]
) -> None:
    """A detecting call keeps its stream's texts and counts them once the agent has its
    answer; a stream whose texts outgrow the inline size (4,096 characters) is handed to
    the scanners at that event and scanned as it comes. Either way the counts and the
    alert are those of the sync path, which scans every event as it comes, for any split
    of the text (findings straddle the events, and the hand-over)."""
    text = dense_pii(size, seed)
    bounds = sorted({min(c * (i + 1), len(text)) for i, c in enumerate(cuts)} | {len(text)})
    deltas = [text[a:b] for a, b in zip([0, *bounds], bounds, strict=False) if b > a]
    body = chat_body(["hello"], None, stream=True)
    policy = PiiPolicy()
    scanned, kept = flow_of("detect", copy.deepcopy(body)), flow_of("detect", copy.deepcopy(body))

    def events() -> list[StreamEvent]:
        return [*(chunk(t) for t in deltas), chunk(None, "stop")]

    async def through(flow: Flow, awaited: bool) -> None:
        policy.request(flow)
        for ev in events():
            assert (
                await policy.stream_event_async(flow, ev)
                if awaited
                else policy.stream_event(flow, ev)
            ) == [ev]
        assert policy.stream_end(flow) == []
        policy.complete(flow)

    run(through, scanned, False)
    run(through, kept, True)
    if size <= 4_096:  # kept, not counted yet: the count waits for the answer to be out
        assert pii_alerts(kept) == []
        assert kept.metadata["pii"].response == {}
    else:  # outgrown: not held, scanned as it came and reported with the stream's end
        assert kept.metadata["pii"].collected is None
        assert pii_alerts(kept) == pii_alerts(scanned) != []
    scanned.run_afterwards()
    kept.run_afterwards()
    assert kept.metadata["pii"].response == scanned.metadata["pii"].response != {}
    assert pii_alerts(kept) == pii_alerts(scanned)
    assert [a.direction for a in pii_alerts(kept)] == ["response"]


def test_a_huge_repeated_text_in_one_event_is_rewritten_as_inline() -> None:
    """The Responses API's `.done` event repeats the whole text: one event, any size."""
    text = "[EMAIL_1] " + dense_pii(20_000)
    common = {"item_id": "m1", "output_index": 0, "content_index": 0, "sequence_number": 1}
    kinds = ("response.output_text.delta", "response.output_text.done")
    outs = []
    for policy, in_steps in ((PiiPolicy(), False), (PiiPolicy(inline_max=0, piece=64), True)):
        body = {"model": "gpt-4o-mini", "stream": True, "input": f"mail {SAMPLES[0]}"}
        flow = flow_of("redact", body, "responses")
        policy.request(flow)
        events = [
            make_event({"type": kinds[0], "delta": text, **common}, kinds[0]),
            make_event({"type": kinds[1], "text": text, **common}, kinds[1]),
        ]
        outs.append(stream_out(policy, flow, events, in_steps))
    assert outs[1] == outs[0]
    done = outs[0][0][-1][1]["text"]
    assert done.startswith(SAMPLES[0]) and "[IP_1]" in done


# ---- the loop keeps turning while a large text is checked --------------------------------------


async def ticks_during(work: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
    """How many times another task ran while `work` ran, and what it returned."""
    ticks = 0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await anyio.lowlevel.checkpoint()
            ticks += 1

    result: list[Any] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()  # the ticker is waiting
        ticks = 0
        result.append(await work())
        seen = ticks
        done.set()
    return seen, result[0]


BIG = 600_000


def test_a_large_request_lets_other_tasks_run_and_a_small_one_does_not_wait() -> None:
    body = chat_body([dense_pii(BIG)], None)
    flow = flow_of("redact", body)
    ticks, _ = run(ticks_during, lambda: PiiPolicy().request_async(flow))
    # Inline, the ticker would not run once; here every ~2 ms of scanning gives it a turn.
    assert ticks >= 5
    assert "[EMAIL_1]" in body["messages"][0]["content"]
    assert SAMPLES[0] not in body["messages"][0]["content"]
    small = flow_of("redact", chat_body([f"mail {SAMPLES[0]}"], None))
    ticks, _ = run(ticks_during, lambda: PiiPolicy().request_async(small))
    assert ticks == 0  # a few KB: inline, no turn given up


def test_a_large_answer_lets_other_tasks_run() -> None:
    flow = flow_of("redact", chat_body([f"mail {SAMPLES[0]}"], None))
    policy = PiiPolicy()
    policy.request(flow)
    message = {"role": "assistant", "content": "[EMAIL_1] " + dense_pii(BIG, seed=3)}
    body = {"choices": [{"index": 0, "message": message}]}
    ticks, changed = run(ticks_during, lambda: policy.response_async(flow, body))
    assert ticks >= 5 and changed
    assert message["content"].startswith(SAMPLES[0]) and "[IP_1]" in message["content"]


def test_a_huge_stream_event_lets_other_tasks_run() -> None:
    flow = flow_of("redact", chat_body(["hi"], None, stream=True))
    policy = PiiPolicy()
    policy.request(flow)
    ticks, out = run(ticks_during, lambda: policy.stream_event_async(flow, chunk(dense_pii(BIG))))
    assert ticks >= 5
    assert "[EMAIL_1]" in "".join(e.data["choices"][0]["delta"]["content"] for e in out)


def most_active(agents: list[AgentGovernance]) -> tuple[int, int]:
    """Two large prompts from `agents` at once: the most large checks seen in progress
    together, and how often the watcher saw one."""
    policy = PiiPolicy()
    active: list[int] = []

    async def main() -> None:
        async def one(agent: AgentGovernance) -> None:
            body = chat_body([dense_pii(200_000)], None)
            flow = Flow(
                agent=agent, adapter=OpenAIAdapter(), endpoint="chat.completions", body=body
            )
            await policy.request_async(flow)

        async def watch() -> None:
            while True:
                active.append(policy._turns.active)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            async with anyio.create_task_group() as calls:
                for agent in agents:
                    calls.start_soon(one, agent)
            tg.cancel_scope.cancel()

    anyio.run(main)
    return max(active), active.count(max(active))


def test_one_agent_checks_one_large_text_at_a_time() -> None:
    """Two large prompts of one agent take turns: one agent's flood is one share of the
    loop; two agents' checks go on side by side: one agent never waits for another's."""
    a1 = AgentGovernance("a1", pii="detect")
    most, seen = most_active([a1, a1])
    assert most == 1 and seen >= 5
    most, seen = most_active([a1, AgentGovernance("a2", pii="detect")])
    assert most == 2 and seen >= 5


# ---- through a real daemon: the control API answers while a large call is checked ----------------


@pytest.fixture(scope="module")
def daemon() -> Iterator[TempDaemon]:
    # The offline provider answers in the daemon: nothing in this process (a fake upstream's
    # thread) competes with the probe, so the PII check is most of the call's time.
    with TempDaemon() as d:
        yield d


@pytest.fixture(scope="module")
def agent(daemon: TempDaemon, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    agent_id, token = token_agent(daemon, tmp_path_factory.mktemp("agent"), pii="redact")
    assert chat(daemon, token, f"warm up {SAMPLES[0]}").status_code == 200
    return agent_id, token


def answering_tenths(d: TempDaemon, call: Callable[[], httpx.Response]) -> tuple[int, Any]:
    """In how many of the middle eight tenths of `call` the control socket answered.

    Health checks go back to back while the call is in flight. Around the PII check (the
    upload, JSON decoding, the offline reply, the books) the loop is free anyway; a loop
    held by the check answers nothing for as long as it lasts, most of a call of a second
    or more, so most tenths would see no answer.
    """
    answer: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answer.append(call()))
    answered: list[float] = []
    started = time.monotonic()
    worker.start()
    while worker.is_alive():
        d.rt.health()
        answered.append(time.monotonic())
    tenth = (time.monotonic() - started) / 10
    worker.join()
    assert answer, "the call raised"
    slices = {int((t - started) / tenth) for t in answered}
    return len(slices & set(range(1, 9))), answer[0]


def chat(d: TempDaemon, token: str, prompt: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
    headers = {"authorization": f"Bearer {token}"}
    return httpx.post(
        d.router_url + "/v1/chat/completions", json=body, headers=headers, timeout=120
    )


def test_control_api_answers_while_a_large_prompt_is_redacted(
    daemon: TempDaemon, agent: tuple[str, str]
) -> None:
    agent_id, token = agent
    prompt = dense_pii(3 << 20)
    tenths, reply = answering_tenths(daemon, lambda: chat(daemon, token, prompt))
    assert reply.status_code == 200, reply.text
    (alert, *_) = [
        e
        for e in daemon.rt.events(agent=agent_id, limit=100, kind="PiiAlert")
        if isinstance(e, PiiAlert) and e.direction == "request"
    ][::-1]
    assert alert.action == "redacted" and alert.count > 10_000  # this prompt's
    assert tenths >= 6, f"the control socket answered in {tenths} of the 8 middle tenths"
