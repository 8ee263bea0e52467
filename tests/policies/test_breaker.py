"""CircuitBreakerPolicy: pybreaker per endpoint, driven by attempt outcomes and a fake clock."""

from __future__ import annotations

from ironrt.governance.flow import Flow, Refusal
from ironrt.policies.breaker import CircuitBreakerPolicy
from ironrt.policies.retry import RetryPolicy
from ironrt.policies.settings import ReliabilitySettings
from ironrt.testing import tattempt, tflow

KEY = "openai:https://api.openai.com"  # tflow's `flow.upstream`, as the router sets it


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_policy(clock: Clock) -> CircuitBreakerPolicy:
    settings = ReliabilitySettings(fail_max=3, reset_timeout_s=10.0)
    return CircuitBreakerPolicy(settings, clock=clock)


def make_flow(clock: Clock, upstream: str = KEY) -> Flow:
    return tflow(upstream=upstream, started=clock())


def one_call(
    policy: CircuitBreakerPolicy,
    clock: Clock,
    status: int | None = None,
    failure: str | None = None,
) -> Flow:
    """A whole call: request, one upstream attempt (if admitted), complete."""
    flow = make_flow(clock)
    policy.request(flow)
    if flow.refusal is None:
        policy.upstream_attempt(flow, tattempt(status, failure=failure))
    policy.complete(flow)
    return flow


def kinds(flow: Flow) -> list[str]:
    return [event.kind for event in flow.events]


def refusal(flow: Flow) -> Refusal:
    assert flow.refusal is not None
    return flow.refusal


def trip(policy: CircuitBreakerPolicy, clock: Clock) -> None:
    for _ in range(3):
        one_call(policy, clock, failure="connect")
    assert policy.states() == {KEY: "open"}


def test_opens_after_consecutive_failures_and_emits_circuit_opened() -> None:
    clock = Clock()
    policy = make_policy(clock)
    one_call(policy, clock, failure="connect")
    one_call(policy, clock, failure="timeout")
    assert policy.states() == {KEY: "closed"}
    third = one_call(policy, clock, status=502)
    assert policy.states() == {KEY: "open"}
    assert kinds(third) == ["CircuitOpened"]
    assert third.events[0].endpoint == KEY


def test_a_success_resets_the_failure_count() -> None:
    clock = Clock()
    policy = make_policy(clock)
    for status in (500, 503, 400, 500, 503):  # a 4xx is an answer: the endpoint is up
        one_call(policy, clock, status=status)
    assert policy.states() == {KEY: "closed"}
    for status in (200, 200, 500, 200, 500, 503):  # a 200 resets it too, however many
        one_call(policy, clock, status=status)
    assert policy.states() == {KEY: "closed"}
    one_call(policy, clock, status=500)
    assert policy.states() == {KEY: "open"}


def test_429_counts_neither_as_failure_nor_success() -> None:
    clock = Clock()
    policy = make_policy(clock)
    for status in (500, 500, 429, 500):
        one_call(policy, clock, status=status)
    assert policy.states() == {KEY: "open"}


def test_open_circuit_refuses_fast_with_503_and_retry_after() -> None:
    clock = Clock()
    policy = make_policy(clock)
    trip(policy, clock)
    clock.now += 2.5
    r = refusal(one_call(policy, clock))
    assert (r.status, r.type, r.code, r.policy, r.retryable) == (
        503,
        "api_error",
        "circuit_open",
        "breaker",
        False,
    )
    assert r.headers == {"retry-after": "8"}  # ceil(10 - 2.5)


def test_after_reset_timeout_exactly_one_probe_goes_through() -> None:
    clock = Clock()
    policy = make_policy(clock)
    trip(policy, clock)
    clock.now += 10
    probe, other = make_flow(clock), make_flow(clock)
    policy.request(probe)
    policy.request(other)
    assert probe.refusal is None
    assert kinds(probe) == ["CircuitHalfOpen"]
    assert refusal(other).code == "circuit_open"
    assert policy.states() == {KEY: "half-open"}


def test_probe_success_closes_the_circuit() -> None:
    clock = Clock()
    policy = make_policy(clock)
    trip(policy, clock)
    clock.now += 10
    probe = one_call(policy, clock, status=200)
    assert kinds(probe) == ["CircuitHalfOpen", "CircuitClosed"]
    assert policy.states() == {KEY: "closed"}
    assert one_call(policy, clock, status=200).refusal is None


def test_probe_failure_opens_the_circuit_for_another_period() -> None:
    clock = Clock()
    policy = make_policy(clock)
    trip(policy, clock)
    clock.now += 10
    probe = one_call(policy, clock, status=503)
    assert kinds(probe) == ["CircuitHalfOpen", "CircuitOpened"]
    clock.now += 9
    assert refusal(one_call(policy, clock)).headers == {"retry-after": "1"}


def test_a_probe_that_settles_without_an_outcome_frees_the_slot() -> None:
    clock = Clock()
    policy = make_policy(clock)
    trip(policy, clock)
    clock.now += 10
    probe = make_flow(clock)
    policy.request(probe)
    probe.refuse(Refusal(402, "budget exhausted", policy="budget"))  # a later policy
    policy.complete(probe)
    assert one_call(policy, clock, status=200).refusal is None
    assert policy.states() == {KEY: "closed"}


def test_each_upstream_has_its_own_circuit_and_the_provider_is_the_fallback_key() -> None:
    clock = Clock()
    policy = make_policy(clock)
    trip(policy, clock)
    onprem = make_flow(clock, upstream="http://gateway.local/v1/")  # a bare URL is prefixed
    bare = make_flow(clock, upstream="")
    policy.request(onprem)
    policy.request(bare)
    assert (onprem.refusal, bare.refusal) == (None, None)
    assert policy.states() == {
        KEY: "open",
        "openai:http://gateway.local/v1": "closed",
        "openai": "closed",
    }


def test_retry_stops_once_the_breaker_opens_the_circuit() -> None:
    clock = Clock()
    breaker = make_policy(clock)
    retry = RetryPolicy(ReliabilitySettings(max_attempts=10), clock=clock)
    flow = make_flow(clock)
    breaker.request(flow)
    delays = []
    for number in range(1, 5):
        attempt = tattempt(failure="connect", number=number)
        breaker.upstream_attempt(flow, attempt)
        delays.append(retry.upstream_attempt(flow, attempt))
    assert delays[:2] != [None, None] and delays[2:] == [None, None]
    assert flow.retry.gave_up is True
    assert breaker.states() == {KEY: "open"}


def test_the_breakers_verdict_is_on_the_flow() -> None:
    clock = Clock()
    policy = make_policy(clock)
    first = one_call(policy, clock, failure="connect")
    assert first.circuit is not None and (first.circuit.name, first.circuit.open) == (KEY, False)
    one_call(policy, clock, failure="connect")
    tripping = one_call(policy, clock, status=500)
    assert tripping.circuit is not None and tripping.circuit.open  # the retry policy reads it
    refused = one_call(policy, clock)
    assert refused.circuit is None and refusal(refused).code == "circuit_open"
