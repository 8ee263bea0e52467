"""Router fixtures: a real fake upstream over TCP and a real daemon pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.router.helpers import ANTHROPIC_KEY, OPENAI_KEY


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def gov(upstream: FakeUpstream) -> Iterator[TempDaemon]:
    """A daemon holding real-looking keys, forwarding to the fake upstream."""
    env = {
        "IRONRT_OPENAI_BASE_URL": upstream.url,
        "IRONRT_ANTHROPIC_BASE_URL": upstream.url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "IRONRT_RETRY_MAX_ATTEMPTS": "1",
    }
    with TempDaemon(offline=False, env=env) as d:
        yield d
