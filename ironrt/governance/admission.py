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
- 503 `ledger_unavailable` with `Retry-After`: a shared scope's lease is spent or expired
  and the fleet ledger (PostgreSQL) does not answer, so no more can be granted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ironrt.governance.flow import Flow, Refusal
from ironrt.governance.ledger import Ledger, Outcome, fmt_usd, nanos_to_usd
from ironrt.governance.ledger.ledger import Admission, describe_refusal
from ironrt.governance.ledger.scope import Scope, iso
from ironrt.protocol.events import AdmissionTimeout, BudgetClamped, BudgetExactCount

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
                flow.emit(BudgetExactCount(bound=claim.input_tokens, exact=exact))
                claim.input_tokens = exact
        outcome = admission.outcome
        if outcome is Outcome.ADMITTED and flow.unpriced and _budgeted(claim.scopes):
            # A budget was set while this unpriced call waited: it can no longer be let
            # through unmetered.
            assert admission.hold is not None
            self.ledger.settle(admission.hold, 0)
            flow.refuse(price_unknown_refusal(flow.provider, flow.model, claim.scopes))
        elif outcome is Outcome.ADMITTED:
            hold = admission.hold
            assert hold is not None
            flow.hold = hold
            if hold.clamped_to is not None and flow.body is not None:
                flow.adapter.set_max_output_tokens(flow.endpoint, flow.body, hold.clamped_to)
                flow.body_changed = True
                flow.output_cap = hold.clamped_to
                flow.emit(
                    BudgetClamped(
                        max_output_tokens=hold.clamped_to,
                        asked=claim.output_tokens,
                        bound_usd=round(nanos_to_usd(hold.nanos), 9),
                    )
                )
        elif outcome is Outcome.EXHAUSTED:
            self._exhausted(flow, admission)
        elif outcome is Outcome.UNAVAILABLE:
            flow.refuse(ledger_unavailable_refusal(admission.scope))
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
            flow.emit(AdmissionTimeout(waited_s=round(admission.waited_s, 3)))
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
        # Queued with the ledger, not on the flow: it must be published after the warnings
        # of calls that settled before this refusal, whichever call finishes first.
        announced = {"refused": True, "threshold_percent": 100, **data}
        self.ledger.announce_exhausted(scope, flow.agent.agent_id, announced)
        if flow.agent.on_budget == "stop":
            flow.stop_agent = True


#: Seconds a client is told to wait after a 503 `ledger_unavailable` (the fleet manager
#: retries the database at least this often).
LEDGER_RETRY_AFTER_S = 2


def ledger_unavailable_refusal(scope: Scope | None) -> Refusal:
    key = scope.key if scope is not None else "a shared scope"
    why = ""
    if scope is not None and scope.lease is not None and scope.lease.error:
        why = f" ({scope.lease.error})"
    return Refusal(
        503,
        f"ironrt: the fleet ledger does not answer{why}, and this daemon's lease on {key} "
        "is spent or expired: no call of it can be admitted until the ledger is back; "
        f"retry after {LEDGER_RETRY_AFTER_S} s",
        type="api_error",
        code="ledger_unavailable",
        policy="budget",
        retryable=True,
        headers={"retry-after": str(LEDGER_RETRY_AFTER_S)},
    )


def _budgeted(scopes: tuple[Scope, ...]) -> bool:
    return any(s.budget_nanos is not None for s in scopes)


def price_unknown_refusal(provider: str, model: str, scopes: tuple[Scope, ...]) -> Refusal:
    """400 `model_price_unknown`: the model has no price and a scope of the call a budget;
    400 `model_required` when the request names no model (there is nothing to price)."""
    if not model:
        return Refusal(
            400,
            "ironrt: the request names no `model`: every call must say which model to call",
            code="model_required",
            policy="budget",
            param="model",
        )
    budgeted = ", ".join(s.key for s in scopes if s.budget_nanos is not None)
    return Refusal(
        400,
        f"ironrt: no known price for model '{model}' ({provider}), and {budgeted} has a "
        "budget: an unpriced call cannot be kept inside it. Price the model in "
        f'$IRONRT_HOME/prices.toml ([models."{model}"] input_mtok = <USD per million input '
        "tokens>, output_mtok = <USD per million output tokens>) and restart the daemon "
        "(`ironrt daemon stop --keep-agents && ironrt daemon start`; in library mode, the "
        "next process reads it); "
        "only an agent with no budget in any of its scopes may call an unpriced model",
        code="model_price_unknown",
        policy="budget",
    )


def exhausted_message(scope: Scope, admission: Admission) -> str:
    budget = scope.budget_usd or 0.0
    if scope.raise_hint is not None:
        hint = scope.raise_hint
    elif scope.agent_id is not None:
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
