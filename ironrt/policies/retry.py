"""Retries of transient upstream failures inside the router, decided here, slept by the forwarder.

Retrying in the router, before anything reached the agent, hides a provider's hiccup from
the agent entirely; and because the router then answers with `x-should-retry: false` when it
gives up, the SDK's own retries do not multiply the load on a provider that is already
failing (3 router tries x 3 SDK tries would be 9 calls per agent call).

What is retried (after attempt `attempt.number`, 1-based, while `flow.committed` is False):

- a connect error (`attempt.failure == "connect"`): the request never reached the provider;
- 429 and 500, 502, 503, 504, 529: the provider answered that it did not do the work.

What is not: a read timeout or a protocol error after the request was sent
(`failure in ("timeout", "protocol")`): the provider may be generating, and billing, the
answer, so a retry could pay for the call twice, and a call slow enough to time out once is
likely to time out again. The router gives up on those at once (so the SDK does not retry
them either). Any other answer (2xx, 4xx) goes to the agent as it is.

The delay before the next try is the upstream's Retry-After, capped at `retry_after_cap_s`
(waiting longer would hold the agent's connection for a minute), or else tenacity's full
jitter exponential backoff (`wait_random_exponential`: uniform between half the initial
window and `backoff_initial_s * 2**(n-1)`, at most `backoff_max_s`), which spreads the
retries of many agents hit by the same outage. No try starts later than `deadline_s` after
the call began: a delay that would cross the deadline is not returned, the router gives up.

Giving up sets `flow.retry.gave_up` (with a `reason`): the router adds
`x-should-retry: false` to the agent's response. With `max_attempts == 1` the router does not
retry at all and never gives up on the SDK's behalf, which then retries as it would without
ironrt. The retry policy must come after the breaker in the pipeline: when the breaker has
found the circuit open for this call (`flow.circuit.open`), it stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ironrt.governance.flow import Attempt, Flow, RetryVerdict
from ironrt.governance.policy import Policy
from ironrt.policies.settings import ReliabilitySettings

if TYPE_CHECKING:
    import tenacity
    from tenacity.wait import wait_base

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
RETRY_FAILURES = frozenset({"connect"})


class RetryPolicy(Policy):
    """Asks the router for another try after a transient failure, within attempts and deadline."""

    name = "retry"

    def __init__(
        self,
        settings: ReliabilitySettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: wait_base | None = None,
    ) -> None:
        """`clock` must be the clock of `Flow.started` (time.monotonic unless a test says so);
        `wait` replaces the backoff strategy (any tenacity wait strategy)."""
        self._settings = settings or ReliabilitySettings()
        self._clock = clock
        self._wait = wait
        # tenacity (~16 ms to import) is loaded at the first backoff, not at the daemon's
        # start: most calls never retry (the daemon's warm-up thread imports it early).
        self._retrying: tenacity.Retrying | None = None

    def upstream_attempt(self, flow: Flow, attempt: Attempt) -> float | None:
        settings = self._settings
        record = flow.retry
        if record is None:
            record = flow.retry = RetryVerdict()
        record.attempts = attempt.number
        if settings.max_attempts <= 1:
            return None
        if attempt.failure is not None and attempt.failure not in RETRY_FAILURES:
            return self._give_up(record, f"not retried: {attempt.failure}")
        if attempt.failure is None and attempt.status not in RETRY_STATUSES:
            return None
        if flow.committed:
            return self._give_up(record, "response already started")
        if flow.circuit is not None and flow.circuit.open:
            return self._give_up(record, "circuit open")
        if attempt.number >= settings.max_attempts:
            return self._give_up(record, f"{attempt.number} attempts")
        delay = self._delay(attempt)
        if self._clock() + delay > flow.started + settings.deadline_s:
            return self._give_up(record, f"deadline of {settings.deadline_s:g} s")
        record.delays.append(delay)
        return delay

    def _delay(self, attempt: Attempt) -> float:
        if attempt.retry_after is not None:
            return max(0.0, min(attempt.retry_after, self._settings.retry_after_cap_s))
        import tenacity

        if self._retrying is None:
            self._retrying = tenacity.Retrying()
        if self._wait is None:
            self._wait = tenacity.wait_random_exponential(
                multiplier=self._settings.backoff_initial_s,
                max=self._settings.backoff_max_s,
                min=self._settings.backoff_initial_s / 2,
            )
        state = tenacity.RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        state.attempt_number = attempt.number
        return float(self._wait(state))

    @staticmethod
    def _give_up(record: RetryVerdict, reason: str) -> None:
        record.gave_up = True
        record.reason = reason
        return None
