"""A circuit breaker per provider endpoint, so an outage fails agents fast instead of piling up.

When an upstream is down, every agent's call would otherwise wait for a connect timeout,
retry, and wait again, multiplying load on a provider that is already struggling. After
`fail_max` consecutive failures at one endpoint the circuit opens: calls to it are refused at
once with a provider-shaped 503 (`code="circuit_open"`, Retry-After = time left, and
`x-should-retry: false` so the SDKs do not hammer the router either). When `reset_timeout_s`
has passed, exactly one call goes through as a probe (half-open) while the others are still
refused; its outcome closes the circuit or opens it for another period.

The state machine is pybreaker's (`CircuitBreaker`, one per endpoint, in memory only).
pybreaker wraps calls, while the router reports outcomes after the fact, so each outcome is
replayed through `CircuitBreaker.call` with a function that raises for a failure: pybreaker
then counts, trips and closes exactly as it would around the real call, and its listener API
turns its state changes into events. Two things pybreaker does not do are done here: it
times the open period on the wall clock, so a storage keeps `opened_at` on the injected
monotonic clock (tests need no waiting; a wall-clock jump cannot hold a circuit open), and
its half-open state admits every caller, so the policy hands out a single probe ticket.

What counts (per upstream attempt, retries included, so one call retried three times into a
dead endpoint is three failures):

- failure: no answer (`attempt.failure`: connect error, timeout, protocol error) or a 5xx;
- success: any other answer, 4xx included (the endpoint is up; the request was wrong);
- neither: 429, a quota verdict about the caller's account, not the endpoint's health
  (tripping on it would turn one agent's rate limit into an outage for all). A half-open
  probe answered 429 keeps its ticket until a later attempt decides or the call settles.

Outcomes that arrive while the circuit is open, or in half-open from calls admitted before it
opened, are not counted: the verdict belongs to the probe. Events, each with the `endpoint`:
CircuitOpened, CircuitHalfOpen, CircuitClosed. When the circuit is open for a call, the
policy sets `flow.circuit.open`, which the retry policy reads to stop.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pybreaker

from ironrt.governance.flow import Attempt, CircuitVerdict, Flow, Refusal
from ironrt.governance.policy import Policy
from ironrt.policies.settings import ReliabilitySettings
from ironrt.protocol.events import CircuitClosed, CircuitHalfOpen, CircuitOpened

_EVENTS: dict[str, type[CircuitOpened | CircuitHalfOpen | CircuitClosed]] = {
    pybreaker.STATE_OPEN: CircuitOpened,
    pybreaker.STATE_HALF_OPEN: CircuitHalfOpen,
    pybreaker.STATE_CLOSED: CircuitClosed,
}
#: Retry-After of a call refused while the probe is in flight: the verdict is near.
_PROBE_RETRY_AFTER_S = 1


class _UpstreamFailed(Exception):
    """Raised inside `CircuitBreaker.call` to replay a failed attempt."""


def _replay(failed: bool) -> None:
    if failed:
        raise _UpstreamFailed


class _ClockStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker's memory storage, with the opening time kept on a monotonic clock.

    pybreaker stores `datetime.now(UTC)` and compares it with the wall clock; this storage
    records the injected clock instead and reports `opened_at` as "now minus the time the
    circuit has been open", so pybreaker's own check agrees with the policy's.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._clock = clock
        self.opened_mono: float | None = None

    @property
    def opened_at(self) -> datetime | None:
        if self.opened_mono is None:
            return None
        return datetime.now(timezone.utc) - timedelta(seconds=self._clock() - self.opened_mono)

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self.opened_mono = self._clock()


class _Transitions(pybreaker.CircuitBreakerListener):
    """Collects pybreaker's state changes until the policy publishes them on a flow."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, str, str | None]] = []

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        previous = old_state.name if old_state is not None else None
        self.pending.append((cb.name or "", new_state.name, previous))


@dataclass(slots=True)
class _Circuit:
    breaker: pybreaker.CircuitBreaker
    storage: _ClockStorage
    #: Ticket of the call probing a half-open circuit, and when it was admitted.
    probe: int | None = None
    probe_since: float = field(default=0.0)

    @property
    def state(self) -> str:
        # The breaker's `current_state` is this storage's state: read it here, one
        # property instead of three on every call.
        return self.storage.state


class CircuitBreakerPolicy(Policy):
    """Refuses calls to an endpoint whose circuit is open; counts upstream outcomes."""

    name = "breaker"

    def __init__(
        self,
        settings: ReliabilitySettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings or ReliabilitySettings()
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self._transitions = _Transitions()
        self._tickets = 0
        #: `endpoint_key` per (provider, flow.upstream): the same few on every call.
        self._keys: dict[tuple[str, str | None], str] = {}

    def states(self) -> dict[str, str]:
        """Each known endpoint's state ("closed", "open", "half-open"), for doctor and health."""
        return {key: circuit.state for key, circuit in self._circuits.items()}

    @staticmethod
    def endpoint_key(flow: Flow) -> str:
        """`provider:base-url` of the upstream the router will call, or just the provider.

        The router puts `"<provider>:<base url>"` in `flow.upstream`; a bare URL there is
        prefixed with the provider, so two providers behind one gateway stay apart.
        """
        upstream = flow.upstream
        if not upstream:
            return flow.provider
        prefix = f"{flow.provider}:"
        return (upstream if upstream.startswith(prefix) else prefix + upstream).rstrip("/")

    def request(self, flow: Flow) -> None:
        known = (flow.provider, flow.upstream)
        key = self._keys.get(known)
        if key is None:
            if len(self._keys) > 1024:  # upstreams are configured, not per call: a guard
                self._keys.clear()
            key = self._keys[known] = self.endpoint_key(flow)
        circuit = self._circuit(key)
        state = circuit.state
        if state == pybreaker.STATE_CLOSED:  # the usual call: nothing to check or refuse
            self._tickets += 1
            flow.metadata[self.name] = {"endpoint": key, "ticket": self._tickets, "probe": False}
            flow.circuit = CircuitVerdict(key)
            if self._transitions.pending:
                self._publish(flow)
            return
        now = self._clock()
        if state == pybreaker.STATE_OPEN:
            opened = circuit.storage.opened_mono
            remaining = self._settings.reset_timeout_s - (now - (now if opened is None else opened))
            if remaining > 0:
                self._refuse(flow, key, math.ceil(remaining), "after repeated upstream failures")
                return
            circuit.breaker.half_open()
        self._tickets += 1
        ticket = self._tickets
        meta: dict[str, object] = {"endpoint": key, "ticket": ticket, "probe": False}
        if circuit.state == pybreaker.STATE_HALF_OPEN:
            lease_over = now - circuit.probe_since >= self._settings.reset_timeout_s
            if circuit.probe is not None and not lease_over:
                self._publish(flow)
                self._refuse(
                    flow,
                    key,
                    _PROBE_RETRY_AFTER_S,
                    "while one probe call checks whether it recovered",
                )
                return
            circuit.probe, circuit.probe_since = ticket, now
            meta["probe"] = True
        flow.metadata[self.name] = meta
        flow.circuit = CircuitVerdict(key)
        self._publish(flow)

    def upstream_attempt(self, flow: Flow, attempt: Attempt) -> float | None:
        meta = flow.metadata.get(self.name)
        if not isinstance(meta, dict):
            return None
        circuit = self._circuits[str(meta["endpoint"])]
        failed = attempt.failure is not None or (attempt.status or 0) >= 500
        counts = failed or attempt.ok  # a 429 is neither
        is_probe = circuit.probe is not None and circuit.probe == meta["ticket"]
        state = circuit.state
        if counts and not failed and not is_probe and state == pybreaker.STATE_CLOSED:
            # A success on a closed circuit with no failures counted changes nothing in
            # pybreaker (the counter is reset to the 0 it is, no listener of ours hears
            # it): skip its locked call machinery, ~8 µs on every answered call.
            if circuit.storage.counter:
                circuit.storage.reset_counter()
        elif counts and (state == pybreaker.STATE_CLOSED or is_probe):
            with contextlib.suppress(_UpstreamFailed, pybreaker.CircuitBreakerError):
                circuit.breaker.call(_replay, failed)
            if is_probe and circuit.state != pybreaker.STATE_HALF_OPEN:
                circuit.probe = None
        if circuit.state == pybreaker.STATE_OPEN and flow.circuit is not None:
            flow.circuit.open = True
        if self._transitions.pending:
            self._publish(flow)
        return None

    def complete(self, flow: Flow) -> None:
        meta = flow.metadata.get(self.name)
        if not isinstance(meta, dict):
            return
        circuit = self._circuits.get(str(meta["endpoint"]))
        if circuit is not None and circuit.probe == meta["ticket"]:
            circuit.probe = None

    def _circuit(self, key: str) -> _Circuit:
        circuit = self._circuits.get(key)
        if circuit is None:
            storage = _ClockStorage(self._clock)
            breaker = pybreaker.CircuitBreaker(
                fail_max=self._settings.fail_max,
                reset_timeout=self._settings.reset_timeout_s,
                listeners=[self._transitions],
                state_storage=storage,
                name=key,
            )
            circuit = self._circuits[key] = _Circuit(breaker, storage)
        return circuit

    def _publish(self, flow: Flow) -> None:
        for key, state, previous in self._transitions.pending:
            if state == pybreaker.STATE_OPEN:
                retry_after = self._settings.reset_timeout_s
                flow.emit(
                    CircuitOpened(
                        circuit=key, endpoint=key, previous=previous, retry_after_s=retry_after
                    )
                )
            else:
                flow.emit(_EVENTS[state](circuit=key, endpoint=key, previous=previous))
        self._transitions.pending.clear()

    def _refuse(self, flow: Flow, key: str, retry_after: int, why: str) -> None:
        retry_after = max(1, retry_after)
        flow.refuse(
            Refusal(
                status=503,
                message=(
                    f"ironrt circuit breaker: calls to {key} are refused {why} "
                    f"(circuit open); retry after {retry_after} s."
                ),
                type="api_error",
                code="circuit_open",
                policy=self.name,
                retryable=False,
                headers={"retry-after": str(retry_after)},
            )
        )
