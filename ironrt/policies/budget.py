"""Budget: an agent's spend never exceeds its budget, also under many concurrent calls.

Before a call is forwarded, an upper bound of its cost is *reserved* (input bounded from
the request's size, output from its max-tokens setting or, absent one, the model's context
window); once the call settles, the real cost is charged and the reservation released.
Since the sum of spend and reservations never exceeds the budget, no interleaving of
concurrent calls can overspend it. When what remains cannot cover a call, its max output
is clamped to what the budget affords (if that is still a useful answer), else the call
is refused with 402 and `x-should-retry: false`.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from ironrt.policies.base import Policy
from ironrt.router.flow import Flow, Refusal
from ironrt.router.pricing import Pricer, UnknownPrice, context_window

WARN_AT = (50, 80, 95, 100)
#: Below this many output tokens an answer is not worth clamping to: refuse instead.
MIN_USEFUL_OUTPUT = 16
#: When neither the request nor genai-prices bounds the output.
FALLBACK_MAX_OUTPUT = 128_000
_FREE = frozenset({"models", "messages.count_tokens"})
_NO_OUTPUT = frozenset({"embeddings"})


class BudgetPolicy(Policy):
    name = "budget"

    def __init__(self, pricer: Pricer) -> None:
        self.pricer = pricer
        self._windows: dict[tuple[str, str], int] = {}

    def request(self, flow: Flow) -> None:
        if flow.endpoint in _FREE or flow.endpoint == "unmetered":
            return
        try:
            self.pricer.check(flow.provider, flow.model)
        except UnknownPrice as exc:
            flow.refuse(Refusal(400, str(exc), code="model_price_unknown", policy=self.name))
            return
        gov = flow.agent
        if gov.budget_usd is None:
            return
        body: dict[str, Any] = flow.body or {}
        input_bound = int(flow.metadata.get("input_tokens_bound", 0))
        choices = max(flow.adapter.choices(flow.endpoint, body), 1)
        has_output = flow.endpoint not in _NO_OUTPUT
        asked = flow.adapter.max_output_tokens(flow.endpoint, body) if has_output else 0
        output_bound = asked if asked is not None else self._window(flow)
        cost = self.pricer.bound(flow.provider, flow.model, input_bound, output_bound * choices)
        remaining = (
            Decimal(str(gov.budget_usd))
            - Decimal(str(gov.spent_usd))
            - Decimal(str(gov.reserved_usd))
        )
        if cost > remaining:
            affordable = (
                self._affordable_output(flow, remaining, input_bound, choices) if has_output else 0
            )
            if affordable < MIN_USEFUL_OUTPUT:
                self._refuse(flow)
                return
            flow.adapter.set_max_output_tokens(flow.endpoint, body, affordable)
            flow.body_changed = True
            flow.emit("BudgetClamped", max_output_tokens=affordable, asked=asked)
            output_bound = affordable
            cost = self.pricer.bound(flow.provider, flow.model, input_bound, affordable * choices)
        reserved = float(cost)
        gov.reserved_usd += reserved
        flow.metadata[self.name] = reserved

    def complete(self, flow: Flow) -> None:
        gov = flow.agent
        reserved = flow.metadata.pop(self.name, 0.0)
        gov.reserved_usd = max(gov.reserved_usd - reserved, 0.0)
        gov.spent_usd += flow.cost_usd
        budget = gov.budget_usd
        if not budget:
            return
        used = 100 * gov.spent_usd / budget
        for threshold in WARN_AT:
            if used >= threshold and threshold not in gov.warned:
                gov.warned.add(threshold)
                kind = "BudgetExhausted" if threshold == 100 else "BudgetWarning"
                flow.emit(
                    kind,
                    threshold_percent=threshold,
                    spent_usd=round(gov.spent_usd, 6),
                    budget_usd=budget,
                )
                if threshold == 100 and gov.on_budget == "stop":
                    flow.metadata["stop_agent"] = True

    def _window(self, flow: Flow) -> int:
        key = (flow.provider, flow.model)
        if key not in self._windows:
            self._windows[key] = context_window(flow.provider, flow.model) or FALLBACK_MAX_OUTPUT
        return self._windows[key]

    def _affordable_output(
        self, flow: Flow, remaining: Decimal, input_bound: int, choices: int
    ) -> int:
        input_cost = self.pricer.bound(flow.provider, flow.model, input_bound, 0)
        per_token = self.pricer.output_token_price(flow.provider, flow.model)
        if per_token <= 0:
            return 0
        return max(math.floor((remaining - input_cost) / per_token / choices), 0)

    def _refuse(self, flow: Flow) -> None:
        gov = flow.agent
        budget = gov.budget_usd or 0.0
        flow.refuse(
            Refusal(
                402,
                f"ironrt budget exhausted for agent {gov.agent_id}: spent ${gov.spent_usd:.6f} of "
                f"${budget:.2f} (${gov.reserved_usd:.6f} held by calls in flight); raise it with "
                f"`ironrt budget {gov.agent_id} <usd>`",
                type="insufficient_quota",
                code="budget_exhausted",
                policy=self.name,
            )
        )
        if 100 not in gov.warned:
            gov.warned.add(100)
            flow.emit(
                "BudgetExhausted",
                spent_usd=round(gov.spent_usd, 6),
                budget_usd=budget,
                refused=True,
            )
            if gov.on_budget == "stop":
                flow.metadata["stop_agent"] = True
