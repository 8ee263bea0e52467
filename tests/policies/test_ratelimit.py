"""RateLimitPolicy: rpm/tpm token buckets of each scope of a call, driven by an injected clock."""

from __future__ import annotations

from ironrt.governance.agent import AgentGovernance
from ironrt.governance.flow import Flow, Refusal, TokenUsage
from ironrt.governance.ledger import Ledger
from ironrt.policies.ratelimit import RateLimitPolicy
from ironrt.testing import tagent, tflow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def agent_with(rpm: int | None = None, tpm: int | None = None) -> AgentGovernance:
    """An agent in its own scope and `global` (the limits sit on its own scope)."""
    return tagent(rpm=rpm, tpm=tpm)


def call(policy: RateLimitPolicy, agent: AgentGovernance, clock: Clock, bound: int = 0) -> Flow:
    """A request whose input bound is `bound` tokens (0: charges no tokens)."""
    flow = tflow(agent=agent, input_bound=bound, started=clock())
    policy.request(flow)
    return flow


def refusal(flow: Flow) -> Refusal:
    assert flow.refusal is not None
    return flow.refusal


def test_rpm_refuses_the_call_over_the_limit_with_a_429() -> None:
    clock, agent = Clock(), agent_with(rpm=5)
    policy = RateLimitPolicy(clock=clock)
    assert all(call(policy, agent, clock).refusal is None for _ in range(5))
    sixth = call(policy, agent, clock)
    r = refusal(sixth)
    assert (r.status, r.type, r.code, r.policy, r.retryable) == (
        429,
        "rate_limit_error",
        "rate_limited",
        "ratelimit",
        True,
    )
    assert r.headers == {"retry-after": "12"}  # one request per 60/5 s
    assert [(e.kind, e.limit, e.retry_after_s) for e in sixth.events] == [
        ("RateLimited", "rpm", 12)
    ]


def test_rpm_allows_again_after_refill() -> None:
    clock, agent = Clock(), agent_with(rpm=5)
    policy = RateLimitPolicy(clock=clock)
    for _ in range(5):
        call(policy, agent, clock)
    clock.now += 12
    assert call(policy, agent, clock).refusal is None
    assert call(policy, agent, clock).refusal is not None


def test_refused_calls_are_not_counted_but_admitted_ones_are() -> None:
    clock, agent = Clock(), agent_with(rpm=1)
    policy = RateLimitPolicy(clock=clock)
    admitted = call(policy, agent, clock)
    admitted.refuse(Refusal(402, "budget", policy="budget"))  # a later policy refuses it
    policy.complete(admitted)
    for _ in range(3):
        assert call(policy, agent, clock).refusal is not None
    clock.now += 60
    assert call(policy, agent, clock).refusal is None


def test_tpm_charges_the_input_bound_then_trues_up_to_usage() -> None:
    clock, agent = Clock(), agent_with(tpm=1000)
    policy = RateLimitPolicy(clock=clock)
    first = call(policy, agent, clock, bound=600)
    assert first.refusal is None
    second = call(policy, agent, clock, bound=600)
    assert refusal(second).headers == {"retry-after": "12"}  # 200 tokens at 1000/60 per s
    assert second.events[0].limit == "tpm"
    first.usage = TokenUsage(input_tokens=100, output_tokens=50)
    policy.complete(first)  # 600 charged, 150 used: 450 back
    assert call(policy, agent, clock, bound=600).refusal is None


def test_tpm_usage_beyond_the_estimate_puts_the_agent_in_debt() -> None:
    clock, agent = Clock(), agent_with(tpm=600)
    policy = RateLimitPolicy(clock=clock)
    flow = call(policy, agent, clock)  # no bound: charges 0
    flow.usage = TokenUsage(input_tokens=500, output_tokens=400)
    policy.complete(flow)  # level 600 - 900 = -300
    r = refusal(call(policy, agent, clock))
    assert r.headers == {"retry-after": "31"}  # 301 tokens at 10 per s
    clock.now += 31
    assert call(policy, agent, clock).refusal is None


def test_tpm_refunds_a_call_settled_without_usage_before_any_byte() -> None:
    clock, agent = Clock(), agent_with(tpm=1000)
    policy = RateLimitPolicy(clock=clock)
    flow = call(policy, agent, clock, bound=1000)
    flow.error = "connect error"
    policy.complete(flow)
    assert call(policy, agent, clock, bound=1000).refusal is None


def test_raising_rpm_on_a_running_agent_adds_the_headroom() -> None:
    clock, agent = Clock(), agent_with(rpm=2)
    policy = RateLimitPolicy(clock=clock)
    for _ in range(2):
        call(policy, agent, clock)
    agent.scopes[0].rpm = 4
    assert [call(policy, agent, clock).refusal is None for _ in range(3)] == [True, True, False]


def test_lowering_rpm_clamps_what_is_left_and_removing_it_lifts_the_limit() -> None:
    clock, agent = Clock(), agent_with(rpm=100)
    policy = RateLimitPolicy(clock=clock)
    call(policy, agent, clock)
    agent.scopes[0].rpm = 1
    assert [call(policy, agent, clock).refusal is None for _ in range(2)] == [True, False]
    agent.scopes[0].rpm = None
    assert all(call(policy, agent, clock).refusal is None for _ in range(50))


def test_no_limits_leave_the_call_alone() -> None:
    clock, agent = Clock(), agent_with()
    policy = RateLimitPolicy(clock=clock)
    flow = call(policy, agent, clock, bound=10**6)
    policy.complete(flow)
    assert (flow.refusal, flow.events, flow.metadata.get("ratelimit")) == (None, [], None)


def test_a_projects_limit_is_shared_by_its_agents_and_named_in_the_refusal() -> None:
    clock, ledger = Clock(), Ledger()
    ledger.set_limits(ledger.scope("project:p"), {"rpm": 2})
    one, two = tagent("a1", ledger=ledger, project="p"), tagent("a2", ledger=ledger, project="p")
    policy = RateLimitPolicy(clock=clock)
    assert call(policy, one, clock).refusal is None
    assert call(policy, two, clock).refusal is None
    third = call(policy, one, clock)
    assert refusal(third).headers == {"retry-after": "30"}
    assert "project:p may make 2 requests per minute" in refusal(third).message
    assert third.events[0].scope == "project:p"


def test_tpm_charges_the_routers_own_input_bound() -> None:
    clock, agent = Clock(), agent_with(tpm=8_000)
    policy = RateLimitPolicy(clock=clock)
    prompt = "x" * 5_000  # the router bounds it by its bytes: over 5 000 tokens
    first = tflow(agent=agent, text=prompt, started=clock())
    policy.request(first)
    assert first.refusal is None and first.input_bound > 5_000
    second = tflow(agent=agent, text=prompt, started=clock())
    policy.request(second)
    assert refusal(second).code == "rate_limited"  # ~3 000 tokens left of 8 000
    assert second.events[0].limit == "tpm"
