"""RetryPolicy decisions and the ReliabilitySettings it reads, with an injected clock."""

from __future__ import annotations

from typing import Any

import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from ironrt.governance.flow import Flow, RetryVerdict
from ironrt.policies.retry import RetryPolicy
from ironrt.policies.settings import ReliabilitySettings
from ironrt.testing import tattempt, tflow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_flow(clock: Clock) -> Flow:
    return tflow(started=clock())


def verdict(flow: Flow) -> RetryVerdict:
    assert flow.retry is not None
    return flow.retry


def make_policy(clock: Clock, **settings: Any) -> RetryPolicy:
    return RetryPolicy(
        ReliabilitySettings(**settings),
        clock=clock,
        wait=tenacity.wait_fixed(1.0),
    )


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529])
def test_retries_429_and_transient_5xx(status: int) -> None:
    clock = Clock()
    flow = make_flow(clock)
    assert make_policy(clock).upstream_attempt(flow, tattempt(status)) == 1.0
    assert verdict(flow).gave_up is False


def test_retries_connect_errors() -> None:
    clock = Clock()
    assert make_policy(clock).upstream_attempt(make_flow(clock), tattempt(failure="connect"))


@pytest.mark.parametrize("status", [200, 400, 401, 404, 422, 501])
def test_never_retries_other_answers_and_leaves_them_to_the_agent(status: int) -> None:
    clock = Clock()
    flow = make_flow(clock)
    assert make_policy(clock).upstream_attempt(flow, tattempt(status)) is None
    assert verdict(flow).gave_up is False


@pytest.mark.parametrize("failure", ["timeout", "protocol"])
def test_gives_up_at_once_on_failures_after_the_request_was_sent(failure: str) -> None:
    clock = Clock()
    flow = make_flow(clock)
    assert make_policy(clock).upstream_attempt(flow, tattempt(failure=failure)) is None
    assert verdict(flow).gave_up is True


@pytest.mark.parametrize(("retry_after", "delay"), [(5.0, 5.0), (0.0, 0.0), (120.0, 20.0)])
def test_honours_retry_after_capped(retry_after: float, delay: float) -> None:
    clock = Clock()
    policy = make_policy(clock, retry_after_cap_s=20.0)
    attempt = tattempt(429, retry_after=retry_after)
    assert policy.upstream_attempt(make_flow(clock), attempt) == delay


def test_gives_up_after_max_attempts() -> None:
    clock = Clock()
    flow = make_flow(clock)
    policy = make_policy(clock, max_attempts=3)
    delays = [policy.upstream_attempt(flow, tattempt(503, number=n)) for n in (1, 2, 3)]
    assert delays == [1.0, 1.0, None]
    assert verdict(flow).gave_up is True
    assert verdict(flow).delays == [1.0, 1.0]


def test_never_returns_a_delay_that_crosses_the_deadline() -> None:
    clock = Clock()
    flow = make_flow(clock)
    policy = make_policy(clock, deadline_s=60.0, retry_after_cap_s=30.0)
    clock.now += 45
    assert policy.upstream_attempt(flow, tattempt(429, retry_after=10)) == 10
    assert policy.upstream_attempt(flow, tattempt(429, number=2, retry_after=16)) is None
    assert verdict(flow).gave_up is True


def test_a_single_attempt_setting_leaves_retries_to_the_sdk() -> None:
    clock = Clock()
    flow = make_flow(clock)
    assert make_policy(clock, max_attempts=1).upstream_attempt(flow, tattempt(503)) is None
    assert verdict(flow).gave_up is False


def test_gives_up_once_something_reached_the_agent() -> None:
    clock = Clock()
    flow = make_flow(clock)
    flow.committed = True
    assert make_policy(clock).upstream_attempt(flow, tattempt(503)) is None
    assert verdict(flow).gave_up is True


@given(number=st.integers(min_value=1, max_value=2), initial=st.floats(0.1, 2.0))
def test_default_backoff_is_jittered_exponential_within_bounds(number: int, initial: float) -> None:
    clock = Clock()
    settings = ReliabilitySettings(backoff_initial_s=initial, backoff_max_s=4 * initial)
    policy = RetryPolicy(settings, clock=clock)
    delay = policy.upstream_attempt(make_flow(clock), tattempt(number=number, status=503))
    assert delay is not None
    assert initial / 2 <= delay <= initial * 2 ** (number - 1)
