"""A PII detector that raises fails the call closed: nothing unchecked reaches the provider
or, in a reply, the agent. A prompt that is only detected is scanned after the answer:
there a raise is logged and the answer stands.

The router of tests/router/test_fail_closed.py (the daemon's pipeline, served on loopback,
a real openai SDK, a FakeUpstream over TCP answering after 100 ms), with the email detector
replaced by one that raises, as a bug or a pathological input would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from ironrt.pii import detectors
from ironrt.protocol.events import PiiAlert
from ironrt.tempdaemon import wait_until
from tests.router.test_fail_closed import Router, router  # noqa: F401  (the fixture)


def _broken(text: str, start: int, out: list[Any]) -> None:
    raise RuntimeError("email detector broke")


@pytest.fixture
def broken(router: Router, monkeypatch: pytest.MonkeyPatch) -> Iterator[Router]:  # noqa: F811
    router.faulty.fails = None
    monkeypatch.setattr(detectors, "_emails", _broken)
    yield router
    router.agent.pii = "detect"


@pytest.mark.parametrize("mode", ("redact", "block"))
def test_a_raising_detector_refuses_the_request_naming_the_policy(
    broken: Router, mode: str
) -> None:
    broken.agent.pii = mode
    before = len(broken.upstream.requests)
    with pytest.raises(openai.InternalServerError) as err:
        broken.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "mail jane@x.io"}]
        )
    body: Any = err.value.body
    assert body["code"] == "policy_error" and "pii" in err.value.message
    assert "jane@x.io" not in err.value.message
    assert len(broken.upstream.requests) == before  # nothing unchecked left the machine


def test_a_detector_raising_on_a_detected_request_leaves_the_answer_standing(
    broken: Router, caplog: pytest.LogCaptureFixture
) -> None:
    """Detecting only, the prompt is scanned once the agent has its answer (nothing sent or
    answered depends on the scan: the prompt went out as it was, the answer comes back as
    it is), so a scan that raises cannot fail the call any more: the answer stands, the
    failure is logged with the policy and the agent, no request alert is made up, and the
    agent's next call goes through."""
    broken.agent.pii = "detect"
    before = len(broken.upstream.requests)
    settled = len(broken.settled)
    broken.upstream.says = "an answer that needs no prompt scan"
    caplog.set_level(logging.ERROR, logger="ironrt.router")
    try:
        reply = broken.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "mail jane@x.io"}]
        )
    finally:
        broken.upstream.says = None
    assert (reply.choices[0].message.content or "").endswith("an answer that needs no prompt scan")
    assert len(broken.upstream.requests) == before + 1
    wait_until(lambda: any("after the answer" in r.getMessage() for r in caplog.records), timeout=5)
    (logged,) = [r for r in caplog.records if "after the answer" in r.getMessage()]
    assert "pii" in logged.getMessage() and "fc1" in logged.getMessage()
    assert logged.exc_info is not None and "email detector broke" in str(logged.exc_info[1])
    assert "jane@x.io" not in logged.getMessage()
    (flow,) = broken.settled[settled:]
    assert flow.failed_policy is None and flow.status_code == 200
    assert not [e for e in flow.events if isinstance(e, PiiAlert) and e.direction == "request"]
    again = broken.openai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "nothing to find"}]
    )
    assert again.choices[0].message.content


def _raising_on_the_reply(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"n": 0}

    def on_reply_only(text: str, start: int, out: list[Any]) -> None:
        calls["n"] += 1
        if "reply@x.io" in text:
            raise RuntimeError("email detector broke on the reply")

    monkeypatch.setattr(detectors, "_emails", on_reply_only)
    return calls


def _stream(router: Router) -> str:  # noqa: F811
    stream = router.openai.chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi @ you"}]
    )
    text = ""
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    return text


def test_a_detector_raising_on_a_redacted_reply_withholds_it(
    broken: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken.agent.pii = "redact"
    calls = _raising_on_the_reply(monkeypatch)
    broken.upstream.says = "write to reply@x.io"
    try:
        with pytest.raises(openai.InternalServerError) as err:
            broken.openai.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi @ you"}]
            )
        assert "pii" in err.value.message and "reply@x.io" not in str(err.value.body)
        assert "reply@x.io" not in _stream(broken)
    finally:
        broken.upstream.says = None
    assert calls["n"] > 0


def test_a_detector_raising_on_a_detected_reply(
    broken: Router, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Detecting only, a reply goes to the agent as it is and is counted once the agent
    has it, whole or streamed: a detector raising there is logged and the reply stands. A
    stream whose text outgrows the inline size (4,096 characters; 40 here) is counted as
    it passes instead (counting it after would hold a text of any size): a raise there
    ends the stream with the provider's error event, after the text that had passed (all
    of it, or less: detecting holds nothing back, so what passed depends on how the events
    arrived)."""
    broken.agent.pii = "detect"
    calls = _raising_on_the_reply(monkeypatch)
    caplog.set_level(logging.ERROR, logger="ironrt.router")

    def logged() -> int:
        return sum("after the answer" in r.getMessage() for r in caplog.records)

    broken.upstream.says = "write to reply@x.io"
    try:
        reply = broken.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi @ you"}]
        )
        assert (reply.choices[0].message.content or "").endswith("write to reply@x.io")
        wait_until(lambda: logged() == 1, timeout=5)
        stream = broken.openai.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi @ you"}]
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text.endswith("write to reply@x.io")
        wait_until(lambda: logged() == 2, timeout=5)
        monkeypatch.setattr(broken.pipeline.get("pii").checks, "inline_max", 40)
        passed = _stream(broken)
        assert text.startswith(passed)  # what passed before the error event: detect holds none
    finally:
        broken.upstream.says = None
    assert calls["n"] > 0
