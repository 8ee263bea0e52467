"""Budget: what a call may cost, asked of the ledger before it is forwarded.

This policy does the synchronous part of budgeting. Before forwarding it refuses token
limits no provider would honour (negative, zero, absurd, not an integer: a negative
`max_tokens` once made a negative reservation and minted budget), checks that the call
can be priced, and puts a `Claim` on the flow: the call's input bound (body bytes, an
exact provider count may replace it at the margin), its output bound (the request's max
tokens, else the model's maximum *output*, never its context window) and its scopes. The
router then asks `ironrt.governance.ledger` for admission, which may wait for calls in flight; when
the call settles, `complete` turns its hold into spend in every scope (the ledger queues
the warnings, 50/80/95 %, and `BudgetExhausted`, 100 %, for the daemon to publish in
order) and stops an `--on-budget stop` agent whose budget it exhausted.

A model with no known price is refused when any scope of the call (agent, project,
global) has a budget: nothing could keep the call inside it. Without a budget anywhere
there is nothing to protect, so the call goes through unmetered: it holds nothing, its
trace records an unknown cost (null) with its tokens, and `PriceUnknown` tells the user
once per provider and model while this policy lives (one daemon run) that calls are
going unpriced. Rate limits still apply (they count requests and tokens, not money).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ironrt.governance.admission import price_unknown_refusal
from ironrt.governance.flow import Flow, Refusal
from ironrt.governance.ledger import Claim, Ledger, usd_to_nanos
from ironrt.governance.output_limits import OutputLimits
from ironrt.governance.policy import Policy
from ironrt.governance.pricing import Pricer, UnknownPrice
from ironrt.protocol.events import PriceUnknown

#: The least output clamping may leave a call: one token. A call is refused as exhausted
#: only when not even its input and one output token fit, i.e. when what is left is below
#: the real cost of any answer. (A larger minimum refuses short answers, a yes/no
#: classification or a few words, while money for them remains.)
MIN_OUTPUT_TOKENS = 1
#: Output limits above this are refused as absurd (no model emits ten million tokens).
MAX_OUTPUT_TOKENS = 10_000_000
#: Completions per call (`n`) above this are refused.
MAX_CHOICES = 128
_FREE = frozenset({"models", "messages.count_tokens", "responses.input_tokens", "unmetered"})
_NO_OUTPUT = frozenset({"embeddings"})
_COUNTABLE = frozenset({"chat.completions", "responses", "messages"})
#: Request fields that cap output tokens, per the three APIs.
_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _bad_limit(body: dict[str, Any]) -> str | None:
    for name in _OUTPUT_FIELDS:
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, int):
            return f"`{name}` must be an integer, not {type(value).__name__}"
        if not 1 <= value <= MAX_OUTPUT_TOKENS:
            return f"`{name}` must be between 1 and {MAX_OUTPUT_TOKENS}, got {value}"
    n = body.get("n")
    valid_n = isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_CHOICES
    if n is not None and not valid_n:
        return f"`n` must be an integer between 1 and {MAX_CHOICES}"
    return None


class BudgetPolicy(Policy):
    name = "budget"

    def __init__(self, pricer: Pricer, outputs: OutputLimits, ledger: Ledger) -> None:
        self.pricer = pricer
        self.outputs = outputs
        self.ledger = ledger
        self._prices: dict[tuple[str, str], Callable[[int, int], int]] = {}
        #: (provider, model) called unpriced since this policy began: `PriceUnknown` once.
        self._unpriced: set[tuple[str, str]] = set()

    def request(self, flow: Flow) -> None:
        if flow.endpoint in _FREE or not flow.agent.scopes:
            return
        body: dict[str, Any] = flow.body or {}
        problem = _bad_limit(body)
        if problem is not None:
            flow.refuse(
                Refusal(
                    400,
                    f"ironrt router: {problem}",
                    code="invalid_max_tokens",
                    policy=self.name,
                    type="invalid_request_error",
                )
            )
            return
        budgeted = any(s.budget_nanos is not None for s in flow.agent.scopes)
        try:
            price = self._price_fn(flow.price_provider, flow.model)
        except UnknownPrice:
            if budgeted:
                flow.refuse(price_unknown_refusal(flow.provider, flow.model, flow.agent.scopes))
                return
            price = _free
            flow.unpriced = True
            self._announce_unpriced(flow)
        has_output = flow.endpoint not in _NO_OUTPUT
        asked = flow.adapter.max_output_tokens(flow.endpoint, body) if has_output else None
        if not has_output:
            output = 0
        elif asked is not None:
            output = asked
            flow.output_cap = asked
        else:
            output = self.outputs.max_output(flow.price_provider, flow.model)
        flow.claim = Claim(
            agent_id=flow.agent.agent_id,
            scopes=flow.agent.scopes,
            price=price,
            input_tokens=flow.input_bound,
            output_tokens=output,
            choices=max(flow.adapter.choices(flow.endpoint, body), 1),
            min_output=min(MIN_OUTPUT_TOKENS, output),
            countable=budgeted and flow.endpoint in _COUNTABLE,
            park=flow.agent.on_budget == "pause",
        )

    def complete(self, flow: Flow) -> None:
        hold = flow.hold
        if hold is None:
            return
        # An unknown cost (an unpriced call, admitted only where no budget can be hurt)
        # moves no spend: the books hold what is known.
        cost = flow.cost_usd
        events = self.ledger.settle(hold, 0 if cost is None else usd_to_nanos(cost))
        if flow.agent.on_budget == "stop" and any(e.kind == "BudgetExhausted" for e in events):
            flow.stop_agent = True

    def _announce_unpriced(self, flow: Flow) -> None:
        key = (flow.provider, flow.model)
        if key in self._unpriced:
            return
        self._unpriced.add(key)
        flow.emit(
            PriceUnknown(
                provider=flow.provider,
                model=flow.model,
                message="no known price: calls are recorded with an unknown cost while no "
                "scope of the calling agent has a budget; add the model to "
                "$IRONRT_HOME/prices.toml to meter it",
            )
        )

    def _price_fn(self, provider: str, model: str) -> Callable[[int, int], int]:
        key = (provider, model)
        fn = self._prices.get(key)
        if fn is None:
            self.pricer.check(provider, model)
            rates = self.pricer.bound_rates(provider, model)
            fn = _integer_bound(*rates) if rates is not None else self._decimal_bound(key)
            self._prices[key] = fn
        return fn

    def _decimal_bound(self, key: tuple[str, str]) -> Callable[[int, int], int]:
        provider, model = key
        pricer = self.pricer

        def fn(input_tokens: int, output_tokens: int) -> int:
            return usd_to_nanos(pricer.bound(provider, model, input_tokens, output_tokens), up=True)

        return fn


def _integer_bound(input_rate: int, output_rate: int) -> Callable[[int, int], int]:
    """A flat price's bound in nano-dollars, rounded up: rates are nano-dollars per million
    tokens, so this is exact integer arithmetic (~1 µs instead of Decimal's ~10)."""

    def fn(input_tokens: int, output_tokens: int) -> int:
        return -(-(input_tokens * input_rate + output_tokens * output_rate) // 1_000_000)

    return fn


def _free(input_tokens: int, output_tokens: int) -> int:
    return 0
