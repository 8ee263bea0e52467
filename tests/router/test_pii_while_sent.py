"""A PII check that only detects is done while the upstream answers, not before the request
leaves: nothing sent depends on it (a finding would go out all the same), so the call need
not wait for it. One that redacts or blocks is done before, as it must.

The router of tests/router/test_fail_closed.py (the daemon's pipeline served on loopback, a
real openai SDK, a FakeUpstream over TCP answering after 100 ms, in a thread of its own).
The email detector is watched: when it reads the prompt, has the upstream received it?
"""

from __future__ import annotations

import time
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


@pytest.fixture
def watched(
    router: Router,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Router, list[bool]]]:
    """The router, and whether the upstream had the prompt when the email detector first
    read it (waiting up to 2 s for it to arrive: it cannot while the scan holds it back)."""
    router.faulty.fails = None
    seen: list[bool] = []
    real = detectors._emails
    before = len(router.upstream.requests)

    def watching(text: str, start: int, out: list[Any]) -> None:
        if "jane@x.io" in text and not seen:  # the prompt (the echoing reply comes later)
            seen.append(_arrives(lambda: len(router.upstream.requests) > before, 2.0))
        real(text, start, out)

    monkeypatch.setattr(detectors, "_emails", watching)
    yield router, seen
    router.agent.pii = "detect"


def _request_alert(rt: Router) -> PiiAlert:
    alerts = [
        e for e in rt.settled[-1].events if isinstance(e, PiiAlert) and e.direction == "request"
    ]
    assert len(alerts) == 1, rt.settled[-1].events
    return alerts[0]


@pytest.mark.parametrize("stream", [False, True])
def test_a_detecting_scan_reads_the_prompt_once_it_is_sent(
    watched: tuple[Router, list[bool]], stream: bool
) -> None:
    rt, seen = watched
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
    assert text
    assert seen == [True]  # the upstream had it when the detector read it
    sent = rt.upstream.requests[-1].body
    assert sent["messages"][0]["content"] == PROMPT  # detect changes nothing sent
    alert = _request_alert(rt)
    assert alert.counts == {"EMAIL": 1} and alert.action == "detected"


def test_a_redacting_scan_reads_the_prompt_before_it_is_sent(
    watched: tuple[Router, list[bool]],
) -> None:
    rt, seen = watched
    rt.agent.pii = "redact"
    rt.openai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    assert seen == [False]
    sent = rt.upstream.requests[-1].body["messages"][0]["content"]
    assert "jane@x.io" not in sent and "[EMAIL_1]" in sent
    assert _request_alert(rt).action == "redacted"


def test_a_blocking_scan_reads_the_prompt_and_nothing_is_sent(
    watched: tuple[Router, list[bool]],
) -> None:
    rt, seen = watched
    rt.agent.pii = "block"
    before = len(rt.upstream.requests)
    with pytest.raises(openai.BadRequestError):
        rt.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
        )
    assert seen == [False] and len(rt.upstream.requests) == before


def test_a_scan_done_while_sent_is_the_routers_time_not_the_upstreams(
    router: Router,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trace's overhead (latency minus the upstream's time) keeps the scan in it, as when
    the scan came first: overlapping the upstream's answer, it is still the router's work.
    The detector is slowed to 150 ms, longer than the upstream's 100: the answer is in by
    the time the scan ends, so what is left of the upstream's time is a few ms."""
    router.faulty.fails = None
    router.agent.pii = "detect"
    real = detectors._emails

    def slow(text: str, start: int, out: list[Any]) -> None:
        if "jane@x.io" in text:
            time.sleep(0.15)
        real(text, start, out)

    monkeypatch.setattr(detectors, "_emails", slow)
    router.openai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    flow = router.settled[-1]
    assert flow.meanwhile_s >= 0.15
    assert flow.upstream_s < 0.05, (flow.upstream_s, flow.meanwhile_s)
