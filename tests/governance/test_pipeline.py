"""The pipeline alone: who it calls, where it stops, and how it fails closed.

Policies here are small recorders: each notes the hooks it was called in, and one may
raise in a chosen hook. The flows are real (`tflow`: a real adapter, a real body).
"""

from __future__ import annotations

import pytest

from ironrt.governance.flow import Attempt, Flow, Refusal, StreamEvent
from ironrt.governance.pipeline import Pipeline, PolicyFailed
from ironrt.governance.policy import Policy
from ironrt.testing import tattempt, tevent, tflow

CHUNK = {"id": "c1", "object": "chat.completion.chunk", "choices": []}


class Recorder(Policy):
    """Overrides every hook; notes each call in a shared log; raises in `fails`."""

    def __init__(self, name: str, log: list[str], fails: str | None = None) -> None:
        self.name = name  # type: ignore[misc]  # per instance, for the test
        self.log = log
        self.fails = fails

    def _hook(self, hook: str) -> None:
        self.log.append(f"{self.name}.{hook}")
        if hook == self.fails:
            raise RuntimeError(f"{self.name} broke in {hook}")

    def request(self, flow: Flow) -> None:
        self._hook("request")

    def upstream_attempt(self, flow: Flow, attempt: Attempt) -> float | None:
        self._hook("upstream_attempt")
        return None

    def response(self, flow: Flow, body: object) -> bool:
        self._hook("response")
        return False

    def stream_event(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        self._hook("stream_event")
        return [event]

    def stream_end(self, flow: Flow) -> list[StreamEvent]:
        self._hook("stream_end")
        return []

    def complete(self, flow: Flow) -> None:
        self._hook("complete")


class OnlyComplete(Policy):
    """Overrides `complete` alone: the pipeline must call it for nothing else."""

    name = "only_complete"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def complete(self, flow: Flow) -> None:
        self.log.append("only_complete.complete")

    # Inherited hooks that would note a call if the pipeline made one anyway.
    def __getattribute__(self, name: str) -> object:
        if name in ("request", "upstream_attempt", "response", "stream_event", "stream_end"):
            object.__getattribute__(self, "log").append(f"only_complete.{name}")
        return object.__getattribute__(self, name)


class Refuser(Policy):
    name = "refuser"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def request(self, flow: Flow) -> None:
        self.log.append("refuser.request")
        flow.refuse(Refusal(403, "no", code="nope", policy=self.name))


class Delayer(Policy):
    name = "delayer"

    def __init__(self, delay: float | None) -> None:
        self.delay = delay

    def upstream_attempt(self, flow: Flow, attempt: Attempt) -> float | None:
        return self.delay


async def run_all_hooks(pipeline: Pipeline, flow: Flow) -> None:
    await pipeline.request(flow)
    pipeline.upstream_attempt(flow, tattempt(200))
    await pipeline.response(flow, {"choices": []})
    await pipeline.stream_event(flow, tevent(CHUNK))
    pipeline.stream_end(flow)
    pipeline.complete(flow)


async def test_only_policies_overriding_a_hook_are_called_for_it() -> None:
    log: list[str] = []
    pipeline = Pipeline([OnlyComplete(log), Recorder("a", log)])
    await run_all_hooks(pipeline, tflow(stream=True))
    assert log == [
        "a.request",
        "a.upstream_attempt",
        "a.response",
        "a.stream_event",
        "a.stream_end",
        "only_complete.complete",
        "a.complete",
    ]


async def test_the_first_refusal_stops_the_request_hooks_but_not_complete() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recorder("a", log), Refuser(log), Recorder("b", log)])
    flow = tflow()
    await pipeline.request(flow)
    pipeline.complete(flow)
    assert flow.refusal is not None and (flow.refusal.status, flow.refusal.code) == (403, "nope")
    assert log == ["a.request", "refuser.request", "a.complete", "b.complete"]
    assert flow.failed_policy is None


async def test_a_policy_raising_in_request_refuses_with_a_500_naming_it() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recorder("a", log, fails="request"), Recorder("b", log)])
    flow = tflow()
    await pipeline.request(flow)
    refusal = flow.refusal
    assert refusal is not None
    assert (refusal.status, refusal.type, refusal.code, refusal.policy, refusal.retryable) == (
        500,
        "api_error",
        "policy_error",
        "a",
        False,
    )
    assert "'a'" in refusal.message and "request" in refusal.message
    assert flow.failed_policy == "a"
    assert log == ["a.request"]  # b never saw a request a could not check


async def test_complete_hooks_all_run_even_if_one_raises() -> None:
    log: list[str] = []
    pipeline = Pipeline(
        [Recorder("a", log), Recorder("b", log, fails="complete"), Recorder("c", log)]
    )
    flow = tflow()
    pipeline.complete(flow)  # never raises: each complete releases what its policy holds
    assert log == ["a.complete", "b.complete", "c.complete"]
    assert flow.failed_policy == "b"


async def test_the_first_failed_policy_is_the_one_kept() -> None:
    log: list[str] = []
    pipeline = Pipeline(
        [Recorder("a", log, fails="complete"), Recorder("b", log, fails="complete")]
    )
    flow = tflow()
    pipeline.complete(flow)
    assert flow.failed_policy == "a" and log == ["a.complete", "b.complete"]


def test_upstream_attempt_raising_raises_policy_failed_and_names_the_policy() -> None:
    log: list[str] = []
    pipeline = Pipeline(
        [Recorder("a", log), Recorder("b", log, fails="upstream_attempt"), Recorder("c", log)]
    )
    flow = tflow()
    with pytest.raises(PolicyFailed) as caught:
        pipeline.upstream_attempt(flow, tattempt(200))
    assert caught.value.policy == "b" and flow.failed_policy == "b"
    assert "'b'" in str(caught.value)
    assert log == ["a.upstream_attempt", "b.upstream_attempt"]


def test_upstream_attempt_takes_the_largest_delay_asked() -> None:
    pipeline = Pipeline([Delayer(0.5), Delayer(None), Delayer(2.0)])
    assert pipeline.upstream_attempt(tflow(), tattempt(503)) == 2.0
    assert Pipeline([Delayer(None)]).upstream_attempt(tflow(), tattempt(503)) is None


@pytest.mark.parametrize("hook", ["response", "stream_event", "stream_end"])
async def test_the_answer_hooks_raise_policy_failed(hook: str) -> None:
    log: list[str] = []
    pipeline = Pipeline([Recorder("a", log, fails=hook)])
    flow = tflow(stream=True)
    with pytest.raises(PolicyFailed) as caught:
        if hook == "response":
            await pipeline.response(flow, {"choices": []})
        elif hook == "stream_event":
            await pipeline.stream_event(flow, tevent(CHUNK))
        else:
            pipeline.stream_end(flow)
    assert caught.value.policy == "a" and flow.failed_policy == "a"


class HoldBack(Policy):
    """Holds every event back until the stream ends (as PII holds a placeholder's tail)."""

    name = "hold_back"

    def __init__(self) -> None:
        self.held: list[StreamEvent] = []

    def stream_event(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        self.held.append(event)
        return []

    def stream_end(self, flow: Flow) -> list[StreamEvent]:
        held, self.held = self.held, []
        return held


async def test_what_an_earlier_policy_flushes_at_stream_end_passes_the_later_ones() -> None:
    log: list[str] = []
    pipeline = Pipeline([HoldBack(), Recorder("after", log)])
    flow = tflow(stream=True)
    first, second = tevent({**CHUNK, "id": "1"}), tevent({**CHUNK, "id": "2"})
    assert await pipeline.stream_event(flow, first) == []
    assert await pipeline.stream_event(flow, second) == []
    assert pipeline.stream_end(flow) == [first, second]
    # Held events never reached the later policy; at the end they pass it, in order.
    assert log == ["after.stream_event", "after.stream_event", "after.stream_end"]


async def test_a_later_policy_raising_on_flushed_events_fails_closed() -> None:
    log: list[str] = []
    pipeline = Pipeline([HoldBack(), Recorder("after", log, fails="stream_event")])
    flow = tflow(stream=True)
    await pipeline.stream_event(flow, tevent(CHUNK))
    with pytest.raises(PolicyFailed) as caught:
        pipeline.stream_end(flow)
    assert caught.value.policy == "after" and flow.failed_policy == "after"
