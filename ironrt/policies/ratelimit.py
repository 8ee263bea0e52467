"""Request and token rate limits (`rpm`, `tpm`) of every scope of a call, as token buckets.

An agent in a loop can burn a provider quota shared with everyone else on the machine; the
limits stop it in the router, before the provider does, with the provider's own 429 shape and
a Retry-After the SDK honours, so the agent slows down instead of failing.

Each limit is a bucket holding at most one minute's allowance and refilling continuously
(`limit / 60` per second), so a burst up to the limit is allowed and the long-run rate is the
limit. The buckets live on each budget scope of the call (the agent's `--rpm`/`--tpm`,
and `ironrt limits set project:NAME --rpm N`, ...) and follow its settings: they are
resized in place when `rpm`/`tpm` change on a running agent (raising a
limit adds the new headroom at once, lowering it clamps what is left), created full when a
limit is set and dropped when it is removed.

Accounting choices:

- A request is counted when this policy admits it, and never refunded: a call later refused
  by another policy (budget, PII, open circuit) or failed upstream still counts, because the
  limit bounds how hard the agent drives the router, and refunding refusals would let a
  misbehaving agent spin against them at full speed. A call this policy refuses is not
  counted (a well-behaved SDK retrying after Retry-After must eventually get through).
- Tokens are unknown before the call, so the request charges an estimate: the router's upper
  bound of the input (`flow.input_bound`) and nothing for
  the output. Charging `max_tokens` up front would refuse most calls for tokens they never
  use. `complete` then trues the charge up to the provider's reported usage (input + output):
  the bucket may go into debt, and the next calls wait until it is repaid, so the limit holds
  over a minute even though concurrent calls can overshoot it for a moment. A call settled
  without usage is refunded if nothing reached the agent, and keeps its estimate otherwise.
- A request is admitted when the tokens bucket holds its estimate (capped at one minute's
  allowance, so a full bucket always admits), and at least one token: an agent in debt waits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ironrt.governance.flow import Flow, Refusal
from ironrt.governance.ledger.scope import Scope
from ironrt.governance.policy import Policy
from ironrt.protocol.events import RateLimited

_EPSILON = 1e-9
Limit = Literal["rpm", "tpm"]


@dataclass(slots=True)
class TokenBucket:
    """`capacity` tokens at most, refilled at `capacity` per minute; `level` may go negative."""

    capacity: float
    level: float
    updated: float

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, need: float) -> float:
        """Seconds until the bucket holds `need` tokens (0 if it already does)."""
        missing = need - self.level
        return 0.0 if missing <= _EPSILON else missing / self.rate

    def resize(self, capacity: float) -> None:
        self.level = min(capacity, self.level + max(0.0, capacity - self.capacity))
        self.capacity = capacity


@dataclass(slots=True)
class AgentBuckets:
    """The rate-limit state of one agent, kept in `AgentGovernance.state["ratelimit"]`."""

    rpm: TokenBucket | None = None
    tpm: TokenBucket | None = None


def _sync(bucket: TokenBucket | None, limit: int | None, now: float) -> TokenBucket | None:
    """Bring a bucket in line with the agent's current setting, refilled to `now`."""
    if limit is None:
        return None
    if bucket is None:
        return TokenBucket(capacity=float(limit), level=float(limit), updated=now)
    bucket.refill(now)
    if bucket.capacity != limit:
        bucket.resize(float(limit))
    return bucket


class RateLimitPolicy(Policy):
    """Refuses an agent's call with a 429 while its rpm or tpm bucket is empty."""

    name = "ratelimit"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock

    def _buckets(self, scope: Scope, now: float) -> AgentBuckets:
        state = scope.state.get(self.name)
        if not isinstance(state, AgentBuckets):
            state = AgentBuckets()
            scope.state[self.name] = state
        state.rpm = _sync(state.rpm, scope.rpm, now)
        state.tpm = _sync(state.tpm, scope.tpm, now)
        return state

    def request(self, flow: Flow) -> None:
        now = self._clock()
        limited = [
            (scope, self._buckets(scope, now))
            for scope in flow.agent.scopes
            if scope.rpm is not None or scope.tpm is not None or self.name in scope.state
        ]
        limited = [(s, b) for s, b in limited if b.rpm is not None or b.tpm is not None]
        if not limited:
            return
        estimate = max(flow.input_bound, 0)
        waits: list[tuple[float, Limit, int, str]] = []  # (wait, limit, per minute, who)
        for scope, buckets in limited:
            if buckets.rpm is not None:
                cap = int(buckets.rpm.capacity)
                waits.append((buckets.rpm.wait_for(1.0), "rpm", cap, _who(scope)))
            if buckets.tpm is not None:
                need = min(max(float(estimate), 1.0), buckets.tpm.capacity)
                cap = int(buckets.tpm.capacity)
                waits.append((buckets.tpm.wait_for(need), "tpm", cap, _who(scope)))
        wait, limit, per_minute, who = max(waits)
        if wait > 0:
            self._refuse(flow, limit, per_minute, wait, who)
            return
        charged: list[TokenBucket] = []
        for _, buckets in limited:
            if buckets.rpm is not None:
                buckets.rpm.level -= 1.0
            if buckets.tpm is not None:
                buckets.tpm.level -= estimate
                charged.append(buckets.tpm)
        if charged:
            flow.metadata[self.name] = (estimate, charged)

    def complete(self, flow: Flow) -> None:
        charge = flow.metadata.get(self.name)
        if not isinstance(charge, tuple):
            return
        estimate, buckets = charge
        if flow.usage is not None:
            actual = flow.usage.input_tokens + flow.usage.output_tokens
        else:
            actual = estimate if flow.committed else 0
        now = self._clock()
        for bucket in buckets:
            bucket.refill(now)
            bucket.level = min(bucket.capacity, bucket.level - (actual - estimate))

    def _refuse(self, flow: Flow, limit: Limit, per_minute: int, wait: float, who: str) -> None:
        retry_after = max(1, math.ceil(wait - _EPSILON))
        unit = "requests" if limit == "rpm" else "tokens"
        flow.refuse(
            Refusal(
                status=429,
                message=(
                    f"ironrt rate limit: {who} may make {per_minute} "
                    f"{unit} per minute (--{limit}); retry after {retry_after} s."
                ),
                type="rate_limit_error",
                code="rate_limited",
                policy=self.name,
                retryable=True,
                headers={"retry-after": str(retry_after)},
            )
        )
        flow.emit(
            RateLimited(limit=limit, retry_after_s=retry_after, per_minute=per_minute, scope=who)
        )


def _who(scope: Scope) -> str:
    return f"agent {scope.agent_id}" if scope.agent_id else scope.key
