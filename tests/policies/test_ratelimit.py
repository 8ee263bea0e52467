"""RateLimitPolicy: rpm/tpm token buckets of each scope of a call, driven by an injected clock."""

from __future__ import annotations

from ironrt.governance.agent import AgentGovernance
from ironrt.governance.flow import Flow, Refusal, TokenUsage
from ironrt.governance.ledger import Scope
from ironrt.policies.ratelimit import RateLimitPolicy
from ironrt.providers.openai import OpenAIAdapter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def agent_with(rpm: int | None = None, tpm: int | None = None) -> AgentGovernance:
    """An agent in its own scope and `global` (the limits sit on its own scope)."""
    return AgentGovernance("a1", scopes=(Scope("agent:a1", rpm=rpm, tpm=tpm), Scope("global")))


def make_flow(agent: AgentGovernance, clock: Clock, input_tokens_bound: int = 0) -> Flow:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return Flow(
        agent=agent,
        adapter=OpenAIAdapter(),
        endpoint="chat.completions",
        body=body,
        model="gpt-4o-mini",
        input_bound=input_tokens_bound,
        started=clock(),
    )


def call(policy: RateLimitPolicy, agent: AgentGovernance, clock: Clock, **meta: int) -> Flow:
    flow = make_flow(agent, clock, **meta)
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
    assert [(e.kind, e.data["limit"], e.data["retry_after_s"]) for e in sixth.events] == [
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
    first = call(policy, agent, clock, input_tokens_bound=600)
    assert first.refusal is None
    second = call(policy, agent, clock, input_tokens_bound=600)
    assert refusal(second).headers == {"retry-after": "12"}  # 200 tokens at 1000/60 per s
    assert second.events[0].data["limit"] == "tpm"
    first.usage = TokenUsage(input_tokens=100, output_tokens=50)
    policy.complete(first)  # 600 charged, 150 used: 450 back
    assert call(policy, agent, clock, input_tokens_bound=600).refusal is None


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
    flow = call(policy, agent, clock, input_tokens_bound=1000)
    flow.error = "connect error"
    policy.complete(flow)
    assert call(policy, agent, clock, input_tokens_bound=1000).refusal is None


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
    flow = call(policy, agent, clock, input_tokens_bound=10**6)
    policy.complete(flow)
    assert (flow.refusal, flow.events, flow.metadata.get("ratelimit")) == (None, [], None)
