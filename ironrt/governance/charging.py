"""What a settled call is charged: the one rule, documented in docs/router.md.

- The provider reported usage: it is validated, then priced. Usage that cannot be true
  (negative or absurd counts, more output than the provider was told to produce) is not
  believed: the call is charged its reservation (the upper bound it was admitted with) and
  a `UsageRejected` event says why.
- No usage, and the call may have been billed: charged its reservation. That is a 2xx
  answer without usage (a stream cut before its usage, a client gone mid-stream whose
  usage never came), and a request that was sent but got no answer (read timeout,
  connection dropped mid-answer).
- No usage, and the call cannot have been billed: $0. That is every refusal, by ironrt
  or by the provider (any 3xx, 4xx or 5xx answer without usage), and a connect failure
  (nothing was sent).

Prices are the requested model's. An answer naming one of its snapshots
(`gpt-4o` → `gpt-4o-2024-08-06`) is priced at the snapshot; an answer naming another
model is priced at the requested one and raises a `ModelMismatch` event.

A model with no known price reaches the provider only when no scope of the call has a
budget (`flow.unpriced`; the budget policy refuses it otherwise). Wherever the rule above
says "priced" or "charged its reservation", such a call's cost is unknown (None): it held
nothing, so its reservation says nothing about it, and recording $0 would pass a call of
unknown price off as free. What the call certainly cost nothing (a refusal, a connect
failure) stays $0.
"""

from __future__ import annotations

import re
from decimal import Decimal

from ironrt.governance.flow import Flow, TokenUsage
from ironrt.governance.ledger import nanos_to_usd
from ironrt.governance.pricing import Pricer, UnknownPrice
from ironrt.protocol.events import ModelMismatch, UsageRejected

#: A token count above this in one call's usage is not believed.
MAX_REPORTED_TOKENS = 100_000_000
_NANO = Decimal("1e-9")
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|v\d+(?::\d+)?)$")


def is_snapshot(answered: str, requested: str) -> bool:
    """`answered` is `requested` itself or a dated/versioned snapshot of it (either way
    round: an agent may ask for the snapshot and be told the alias)."""
    return answered == requested or _base(answered) == _base(requested)


def _base(model: str) -> str:
    model = model.split("/", 1)[-1]
    return _SNAPSHOT_SUFFIX.sub("", model)


#: The counts of a call's usage, each checked to be in range.
_COUNT_NAMES = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def usage_problem(usage: TokenUsage, output_cap: int | None, choices: int) -> str | None:
    figures = (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    )
    if min(figures) < 0 or max(figures) > MAX_REPORTED_TOKENS:
        # Which one, named (every call checks the range in one go, above).
        for name, value in zip(_COUNT_NAMES, figures, strict=True):
            if value < 0:
                return f"{name} is negative ({value})"
            if value > MAX_REPORTED_TOKENS:
                return f"{name} is absurd ({value})"
    if usage.cached_tokens + usage.cache_write_tokens > usage.input_tokens:
        return "cached tokens exceed the input tokens"
    if usage.reasoning_tokens > usage.output_tokens:
        return "reasoning tokens exceed the output tokens"
    if output_cap is not None and usage.output_tokens > output_cap * max(choices, 1):
        return (
            f"{usage.output_tokens} output tokens reported, but the provider was told to "
            f"produce at most {output_cap * max(choices, 1)}"
        )
    return None


def charge(flow: Flow, pricer: Pricer) -> None:
    """Set `flow.cost_usd` (and notes on `flow.error`) by the rule above."""
    reserved: float | None = None
    if not flow.unpriced:
        reserved = nanos_to_usd(flow.hold.nanos) if flow.hold is not None else 0.0
    usage = flow.usage
    if usage is not None:
        choices = flow.claim.choices if flow.claim is not None else 1
        problem = usage_problem(usage, flow.output_cap, choices)
        if problem is not None:
            flow.usage = None
            flow.cost_usd = reserved
            outcome = "charged the reservation" if reserved is not None else "cost unknown"
            _note(flow, f"usage rejected ({problem}): {outcome}")
            flow.emit(UsageRejected(reason=problem, charged_usd=reserved))
            return
        cost = _price(flow, pricer, usage)
        flow.cost_usd = reserved if cost is None else float(cost.quantize(_NANO))
        return
    billed = flow.upstream_failure in ("timeout", "protocol") or (
        flow.upstream_status is not None and 200 <= flow.upstream_status < 300
    )
    if billed and flow.hold is not None:  # free endpoints never hold anything
        flow.cost_usd = reserved
        if reserved is not None:
            _note(flow, "usage unknown: charged the reserved upper bound")
    else:
        flow.cost_usd = 0.0


def _price(flow: Flow, pricer: Pricer, usage: TokenUsage) -> Decimal | None:
    requested, answered = flow.model, flow.response_model
    model = requested
    if answered and answered != requested:
        if is_snapshot(answered, requested):
            model = answered
        else:
            flow.emit(ModelMismatch(requested=requested, answered=answered))
    for candidate in dict.fromkeys((model, requested)):
        try:
            return pricer.cost(flow.price_provider, candidate, usage)
        except UnknownPrice:
            continue
    return None


def _note(flow: Flow, text: str) -> None:
    flow.error = f"{flow.error}; {text}" if flow.error else text
