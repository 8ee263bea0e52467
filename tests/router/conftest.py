"""Router fixtures: a real fake upstream over TCP and a real daemon pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.router.helpers import governed_env


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def gov(upstream: FakeUpstream) -> Iterator[TempDaemon]:
    """A daemon holding real-looking keys, forwarding to the fake upstream."""
    env = governed_env(upstream.url)
    with TempDaemon(offline=False, env=env) as d:
        yield d
