"""A PII detector that raises fails the call closed: nothing unchecked reaches the provider
or, in a reply, the agent.

The router of tests/router/test_fail_closed.py (the daemon's pipeline, served on loopback,
a real openai SDK, a FakeUpstream over TCP answering after 100 ms), with the email detector
replaced by one that raises, as a bug or a pathological input would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from ironrt.pii import detectors
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


def test_a_detector_raising_on_a_detected_request_withholds_the_answer(broken: Router) -> None:
    """Detecting only, the request is scanned while the upstream answers (nothing sent
    depends on the scan: a finding would have gone out too), so a scan that raises finds
    the request gone; the answer is withheld, as for a reply the checks could not read."""
    broken.agent.pii = "detect"
    before = len(broken.upstream.requests)
    broken.upstream.says = "an answer the checks never read"
    try:
        with pytest.raises(openai.InternalServerError) as err:
            broken.openai.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "mail jane@x.io"}]
            )
    finally:
        broken.upstream.says = None
    body: Any = err.value.body
    assert body["code"] == "policy_error" and "pii" in err.value.message
    assert "jane@x.io" not in err.value.message
    assert len(broken.upstream.requests) == before + 1
    assert "never read" not in str(body)


@pytest.mark.parametrize("mode", ("redact", "detect"))
def test_a_detector_raising_on_the_reply_withholds_it(
    broken: Router, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken.agent.pii = mode
    calls = {"n": 0}

    def on_reply_only(text: str, start: int, out: list[Any]) -> None:
        calls["n"] += 1
        if "reply@x.io" in text:
            raise RuntimeError("email detector broke on the reply")

    monkeypatch.setattr(detectors, "_emails", on_reply_only)
    broken.upstream.says = "write to reply@x.io"
    try:
        with pytest.raises(openai.InternalServerError) as err:
            broken.openai.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi @ you"}]
            )
        assert "pii" in err.value.message and "reply@x.io" not in str(err.value.body)
        stream = broken.openai.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi @ you"}]
        )
        text = ""
        with pytest.raises(openai.APIError):
            for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
        if mode == "redact":  # detect passes stream text on as it comes: it only counts
            assert "reply@x.io" not in text
    finally:
        broken.upstream.says = None
    assert calls["n"] > 0
