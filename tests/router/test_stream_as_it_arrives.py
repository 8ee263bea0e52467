"""A streamed answer is relayed as it arrives: no event waits for the next one.

Through a real daemon and the fake upstream over TCP, the upstream pausing `PAUSE` seconds
before each event after the first. Had the router held an event back until more came (a
buffer to fill, an event parsed only once the next began), two events would reach the
agent together; each must instead arrive on its own, about one pause after the one before
it. The closing event (`[DONE]`, `message_stop`) is the one the router holds on purpose,
until the call is settled (relay.py), and is checked only for arriving at all.

One daemon and one upstream for the module; one agent's token for every call.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.router.helpers import governed_env, token_agent

#: The upstream's pause before each event after the first.
PAUSE = 0.25
#: Two events less apart than this arrived together: one was held back.
APART = PAUSE / 2


class Setup(msgspec.Struct):
    d: TempDaemon
    up: FakeUpstream
    token: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with FakeUpstream() as up, TempDaemon(offline=False, env=governed_env(up.url)) as d:
        _, token = token_agent(d, tmp_path_factory.mktemp("stream"))
        yield Setup(d, up, token)


def _arrivals(s: Setup, path: str, body: dict[str, Any]) -> list[tuple[float, bytes]]:
    """Each SSE event the agent receives, with the time its last byte arrived."""
    if path == "/v1/messages":
        headers = {"x-api-key": s.token, "anthropic-version": "2023-06-01"}
    else:
        headers = {"authorization": f"Bearer {s.token}"}
    got: list[tuple[float, bytes]] = []
    pending = b""
    with (
        httpx.Client(base_url=s.d.router_url, timeout=30) as client,
        client.stream("POST", path, json=body, headers=headers) as resp,
    ):
        assert resp.status_code == 200, resp.read()
        for chunk in resp.iter_raw():
            now = time.monotonic()
            pending += chunk
            while b"\n\n" in pending:
                event, pending = pending.split(b"\n\n", 1)
                got.append((now, event))
    assert not pending
    return got


CALLS = {
    "openai": (
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_completion_tokens": 3,
            "stream": True,
        },
        b"data: [DONE]",
    ),
    "anthropic": (
        "/v1/messages",
        {
            "model": "claude-haiku-4-5",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 3,
            "stream": True,
        },
        b"event: message_stop",
    ),
}


@pytest.mark.parametrize("provider", sorted(CALLS))
def test_each_event_reaches_the_agent_before_the_upstream_sends_the_next(
    setup: Setup, provider: str
) -> None:
    path, body, closing = CALLS[provider]
    setup.up.delay = 0.0
    warm = _arrivals(setup, path, body)  # the connections, the first call's imports
    setup.up.delay = PAUSE
    try:
        got = _arrivals(setup, path, body)
    finally:
        setup.up.delay = 0.0
    events = [raw for _, raw in got]
    assert len(events) == len(warm), events  # nothing lost, nothing added by the pauses
    assert events[-1].startswith(closing), events[-1]
    assert sum(raw.startswith(closing) for raw in events) == 1
    answer = got[:-1]  # the closing event waits for the books, on purpose
    assert len(answer) >= 4, events
    gaps = [round(b[0] - a[0], 3) for a, b in itertools.pairwise(answer)]
    assert min(gaps) >= APART, f"events arrived together (held back): gaps {gaps}"
    # ... and none came late: the whole answer took about the upstream's pauses.
    assert answer[-1][0] - answer[0][0] < PAUSE * (len(answer) - 1) + 2.0, gaps
