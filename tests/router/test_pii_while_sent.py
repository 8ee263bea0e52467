"""A PII check that only detects is done once the agent has its answer, not before the
request leaves nor while the upstream answers: nothing sent or answered depends on it (a
finding would go out all the same), so neither the call nor its answer waits for it. One
that redacts or blocks is done before the request leaves, as it must.

The router of tests/router/test_fail_closed.py (the daemon's pipeline served on loopback, a
real openai SDK, a FakeUpstream over TCP answering after 100 ms, in a thread of its own).
The email detector is watched: when it reads the prompt, has the upstream received it, and
has the agent its answer?
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from ironrt.pii import detectors
from ironrt.protocol.events import PiiAlert
from ironrt.tempdaemon import wait_until
from tests.router.test_fail_closed import Router, router  # noqa: F401  (the fixture)

PROMPT = "please mail the invoice to jane@x.io today"


def _arrives(check: Callable[[], bool], within: float) -> bool:
    """Whether `check` holds within `within` seconds (the upstream's thread records a
    request as it reads it)."""
    try:
        wait_until(check, timeout=within, interval=0.002)
    except AssertionError:
        return False
    return True


class Watched:
    """When the email detector first read the prompt: whether the upstream had it (waiting
    up to 2 s for it: it cannot arrive while the scan holds it back) and, if so, whether the
    agent had its answer (the test says so once its SDK call returned; waiting up to 2 s:
    it cannot return while the scan holds the answer back)."""

    def __init__(self, router: Router) -> None:  # noqa: F811
        self.router = router
        self.seen: list[tuple[bool, bool]] = []
        self.answered = threading.Event()


@pytest.fixture
def watched(
    router: Router,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Watched]:
    router.faulty.fails = None
    w = Watched(router)
    real = detectors._emails
    before = len(router.upstream.requests)

    def watching(text: str, start: int, out: list[Any]) -> None:
        if text == PROMPT and not w.seen:  # the prompt (the reply echoes it in a sentence)
            sent = _arrives(lambda: len(router.upstream.requests) > before, 2.0)
            w.seen.append((sent, sent and w.answered.wait(2.0)))
        real(text, start, out)

    monkeypatch.setattr(detectors, "_emails", watching)
    yield w
    router.agent.pii = "detect"


def _alert(rt: Router, direction: str = "request") -> PiiAlert:
    """The last call's alert for `direction` (published once its text was scanned)."""

    def alerts() -> list[PiiAlert]:
        events = rt.settled[-1].events
        return [e for e in events if isinstance(e, PiiAlert) and e.direction == direction]

    wait_until(lambda: alerts() != [], timeout=5)
    (alert,) = alerts()
    return alert


@pytest.mark.parametrize("stream", [False, True])
def test_a_detecting_scan_reads_the_prompt_once_the_agent_has_its_answer(
    watched: Watched, stream: bool
) -> None:
    rt = watched.router
    rt.agent.pii = "detect"
    if stream:
        chunks = rt.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        reply = rt.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
        )
        text = reply.choices[0].message.content or ""
    watched.answered.set()
    assert text
    alert = _alert(rt)
    assert watched.seen == [(True, True)]  # sent, and answered, when the detector read it
    sent = rt.upstream.requests[-1].body
    assert sent["messages"][0]["content"] == PROMPT  # detect changes nothing sent
    assert alert.counts == {"EMAIL": 1} and alert.action == "detected"


def test_a_redacting_scan_reads_the_prompt_before_it_is_sent(watched: Watched) -> None:
    rt, seen = watched.router, watched.seen
    rt.agent.pii = "redact"
    rt.openai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    assert seen == [(False, False)]
    sent = rt.upstream.requests[-1].body["messages"][0]["content"]
    assert "jane@x.io" not in sent and "[EMAIL_1]" in sent
    assert _alert(rt).action == "redacted"


def test_a_blocking_scan_reads_the_prompt_and_nothing_is_sent(watched: Watched) -> None:
    rt, seen = watched.router, watched.seen
    rt.agent.pii = "block"
    before = len(rt.upstream.requests)
    with pytest.raises(openai.BadRequestError):
        rt.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
        )
    assert seen == [(False, False)] and len(rt.upstream.requests) == before


def test_a_detected_reply_is_counted_once_the_agent_has_it(
    router: Router,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A whole reply that is only detected goes to the agent as it is, so it is counted
    after the agent has it, as the prompt is (the upstream echoes the prompt: the reply
    holds the email too)."""
    router.faulty.fails = None
    router.agent.pii = "detect"
    answered = threading.Event()
    seen: list[bool] = []
    real = detectors._emails

    def watching(text: str, start: int, out: list[Any]) -> None:
        if "You said" in text and PROMPT in text and not seen:
            seen.append(answered.wait(2.0))
        real(text, start, out)

    monkeypatch.setattr(detectors, "_emails", watching)
    reply = router.openai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    answered.set()
    assert PROMPT in (reply.choices[0].message.content or "")

    alert = _alert(router, "response")
    assert seen == [True]
    assert alert.counts == {"EMAIL": 1}
