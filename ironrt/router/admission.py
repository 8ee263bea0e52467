"""Admission: the asynchronous half of the budget, between the policies and the upstream.

The budget policy leaves a `Claim` on the flow; here the ledger admits it, possibly after
waiting for calls in flight. At the margin (the byte-based input bound decides between
a full answer, a clamped one or a refusal) the provider's own count endpoint gives the
exact input first. What comes out is a hold on the flow, or a provider-shaped refusal:

- 402 `budget_exhausted`: settled spend plus the least the call can cost exceeds a
  budget. Never because of holds. With `--on-budget pause` the call is held unanswered
  instead (the ledger parks it, the supervisor SIGSTOPs the agent) until the budget is
  raised or the window resets.
- 429 `admission_timeout` with `Retry-After`: it waited `IRONRT_ADMISSION_TIMEOUT` for
  calls in flight (or a `max_concurrent` slot) and still did not fit.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from ironrt.ledger import Ledger, Outcome, fmt_usd, nanos_to_usd
from ironrt.ledger.ledger import Admission, describe_refusal
from ironrt.ledger.scope import Scope, iso
from ironrt.router.flow import Flow, Refusal

#: `IRONRT_ADMISSION_TIMEOUT`: how long a call may wait for budget held by calls in flight.
DEFAULT_ADMISSION_TIMEOUT_S = 60.0

Counter = Callable[[Flow], Awaitable[int | None]]


class Admitter:
    def __init__(self, ledger: Ledger, count: Counter, timeout: float) -> None:
        self.ledger = ledger
        self.count = count
        self.timeout = timeout

    async def admit(self, flow: Flow) -> None:
        claim = flow.claim
        if claim is None:
            return
        while True:
            admission = await self.ledger.admit(claim, self.timeout)
            if admission.outcome is not Outcome.NEED_COUNT:
                break
            exact = await self.count(flow)
            claim.exact = True  # one count per call; a failed count keeps the byte bound
            if exact is not None and exact < claim.input_tokens:
                flow.emit("BudgetExactCount", bound=claim.input_tokens, exact=exact)
                claim.input_tokens = exact
        outcome = admission.outcome
        if outcome is Outcome.ADMITTED:
            hold = admission.hold
            assert hold is not None
            flow.hold = hold
            if hold.clamped_to is not None and flow.body is not None:
                flow.adapter.set_max_output_tokens(flow.endpoint, flow.body, hold.clamped_to)
                flow.body_changed = True
                flow.output_cap = hold.clamped_to
                flow.emit(
                    "BudgetClamped",
                    max_output_tokens=hold.clamped_to,
                    asked=claim.output_tokens,
                    bound_usd=round(nanos_to_usd(hold.nanos), 9),
                )
        elif outcome is Outcome.EXHAUSTED:
            self._exhausted(flow, admission)
        elif outcome is Outcome.TIMEOUT:
            retry_after = 1
            flow.refuse(
                Refusal(
                    429,
                    f"ironrt: this call waited {self.timeout:g} s for budget held by calls in "
                    "flight (or for a max_concurrent slot) and still does not fit; retry "
                    f"after {retry_after} s",
                    type="rate_limit_error",
                    code="admission_timeout",
                    policy="budget",
                    retryable=True,
                    headers={"retry-after": str(retry_after)},
                )
            )
            flow.emit("AdmissionTimeout", waited_s=round(admission.waited_s, 3))
        else:
            flow.refuse(
                Refusal(
                    409,
                    "ironrt: the agent was stopped while this call waited for budget",
                    code="agent_stopped",
                    policy="budget",
                )
            )

    def _exhausted(self, flow: Flow, admission: Admission) -> None:
        scope = admission.scope
        assert scope is not None
        data = describe_refusal(admission)
        flow.refuse(
            Refusal(
                402,
                exhausted_message(scope, admission),
                type="insufficient_quota",
                code="budget_exhausted",
                policy="budget",
            )
        )
        if not scope.exhausted:  # announced once a window, not for every refused call
            scope.exhausted = True
            flow.emit("BudgetExhausted", refused=True, threshold_percent=100, **data)
        if flow.agent.on_budget == "stop":
            flow.stop_agent = True


def exhausted_message(scope: Scope, admission: Admission) -> str:
    budget = scope.budget_usd or 0.0
    if scope.agent_id is not None:
        hint = f"`ironrt budget {scope.agent_id} <usd>`"
    else:
        hint = f"`ironrt limits set {scope.key} --budget <usd>`"
    reset = f", or wait for the window to reset at {iso(scope.resets_at)}"
    return (
        f"ironrt budget exhausted in {scope.key}: spent {fmt_usd(scope.spent_usd)} of "
        f"{fmt_usd(budget)} ({fmt_usd(scope.held_usd)} held by calls in flight); this call "
        f"costs at least {fmt_usd(nanos_to_usd(admission.least_nanos))} (up to "
        f"{fmt_usd(nanos_to_usd(admission.bound_nanos))}). Raise it with {hint}"
        f"{reset if scope.resets_at is not None else ''}"
    )


def admission_timeout(raw: str | None) -> float:
    """`IRONRT_ADMISSION_TIMEOUT` in seconds (0 < t ≤ 3600), with a clear error."""
    if raw is None or raw.strip() == "":
        return DEFAULT_ADMISSION_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise ValueError(
            f"IRONRT_ADMISSION_TIMEOUT must be a number of seconds in (0, 3600], not {raw!r}"
        )
    return value
