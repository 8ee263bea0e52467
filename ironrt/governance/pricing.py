"""Prices of LLM calls, from genai-prices (plus prices a user configures).

A model's price is looked up once per (provider, model) and cached (genai-prices' model
matching costs far more than the arithmetic), and refreshed hourly, since genai-prices
knows prices that change on a date. A model with no known price raises `UnknownPrice`
(also cached: genai-prices takes milliseconds to find nothing). The caller decides what
that means: a refusal when one of the call's scopes has a budget (an unpriced call could
not be kept inside it), otherwise a call recorded with an unknown cost.

User prices live in `$IRONRT_HOME/prices.toml`:

    [models."my-finetune"]
    input_mtok = 0.30      # USD per million input tokens
    output_mtok = 1.20
    cache_read_mtok = 0.03 # optional
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ironrt.governance.flow import TokenUsage
from ironrt.governance.prices_table import model_entries

_TTL_S = 3600.0
_MTOK = Decimal(1_000_000)


class UnknownPrice(LookupError):
    pass


def unknown_price_message(provider: str, model: str) -> str:
    return (
        f"no known price for model '{model}' ({provider}); ironrt cannot keep an unpriced "
        "call inside a budget. Add it to $IRONRT_HOME/prices.toml"
    )


@dataclass(slots=True, frozen=True)
class ConfiguredPrice:
    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None

    def cost(self, u: TokenUsage) -> Decimal:
        cached = u.cached_tokens if self.cache_read_mtok is not None else 0
        written = u.cache_write_tokens if self.cache_write_mtok is not None else 0
        plain = max(u.input_tokens - cached - written, 0)
        total = plain * self.input_mtok + u.output_tokens * self.output_mtok
        if self.cache_read_mtok is not None:
            total += cached * self.cache_read_mtok
        if self.cache_write_mtok is not None:
            total += written * self.cache_write_mtok
        return total / _MTOK


def configured_prices(data: dict[str, Any], source: str) -> dict[str, ConfiguredPrice]:
    """The prices of a decoded prices.toml (`source` names it in errors; every entry is
    checked by `prices_table.model_entries`); reading the file is the caller's
    (`ironrt.router.prices_file`): the kernel does no I/O."""
    out: dict[str, ConfiguredPrice] = {}
    for model, e in model_entries(data, source).items():
        if e.input_mtok is None and e.output_mtok is None:
            continue  # only other settings (max_output_tokens): not a price
        if e.input_mtok is None or e.output_mtok is None:
            raise ValueError(f"{source}: model {model!r} needs both input_mtok and output_mtok")
        out[model] = ConfiguredPrice(
            _decimal(e.input_mtok),
            _decimal(e.output_mtok),
            None if e.cache_read_mtok is None else _decimal(e.cache_read_mtok),
            None if e.cache_write_mtok is None else _decimal(e.cache_write_mtok),
        )
    return out


def _decimal(price: float) -> Decimal:
    """As written in the file (0.3, not 0.299999999999999988897769753748...)."""
    return Decimal(repr(price))


def genai_usage(u: TokenUsage) -> Any:
    """Our usage in genai-prices' terms: input_tokens is the total input, cache reads and
    writes are parts of it, reasoning is part of the output."""
    from genai_prices import Usage

    return Usage(
        input_tokens=u.input_tokens,
        cache_read_tokens=u.cached_tokens or None,
        cache_write_tokens=u.cache_write_tokens or None,
        output_tokens=u.output_tokens,
    )


@dataclass(slots=True, frozen=True)
class _LinearRates:
    """USD per million tokens of each kind, read off genai-prices once per model.

    genai-prices resolves units and registries on every `calc_price` (about 0.2 ms); for a
    flat price the cost is a fixed linear function of the token counts, so the hot path does
    four multiplications instead, with the same Decimal result.
    """

    plain: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal

    def cost(self, u: TokenUsage) -> Decimal:
        plain = max(u.input_tokens - u.cached_tokens - u.cache_write_tokens, 0)
        return (
            plain * self.plain
            + u.cached_tokens * self.cache_read
            + u.cache_write_tokens * self.cache_write
            + u.output_tokens * self.output
        ) / _MTOK


def _linear(price: Any) -> _LinearRates | None:
    from genai_prices.types import TieredPrices

    if any(isinstance(v, TieredPrices) for v in vars(price).values()):
        return None  # the rate depends on the volume: keep genai-prices' own arithmetic

    def at(**counts: int) -> Decimal:
        return Decimal(price.calc_price(genai_usage(TokenUsage(**counts)))["total_price"])

    m = 1_000_000
    return _LinearRates(
        plain=at(input_tokens=m),
        cache_read=at(input_tokens=m, cached_tokens=m),
        cache_write=at(input_tokens=m, cache_write_tokens=m),
        output=at(output_tokens=m),
    )


class Pricer:
    def __init__(self, configured: dict[str, ConfiguredPrice] | None = None) -> None:
        self.configured = configured or {}
        #: (when looked up, price); a price of None: genai-prices does not know the model.
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def _price_of(self, provider: str, model: str) -> Any:
        key = (provider, model)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < _TTL_S:
            if hit[1] is None:
                raise UnknownPrice(unknown_price_message(provider, model))
            return hit[1]
        if model in self.configured:
            price: Any = self.configured[model]
        else:
            from datetime import datetime, timezone

            from genai_prices import data_snapshot

            try:
                _, info = data_snapshot.get_snapshot().find_provider_model(
                    model, None, provider, None
                )
            except LookupError:
                # Remembered like a price: an agent calling an unpriced model in a loop
                # (allowed without a budget) must not pay genai-prices' search every call.
                self._cache[key] = (now, None)
                raise UnknownPrice(unknown_price_message(provider, model)) from None
            model_price = info.get_prices(datetime.now(tz=timezone.utc))
            price = _linear(model_price) or model_price
        self._cache[key] = (now, price)
        return price

    def check(self, provider: str, model: str) -> None:
        self._price_of(provider, model)

    def cost(self, provider: str, model: str, usage: TokenUsage) -> Decimal:
        price = self._price_of(provider, model)
        if isinstance(price, (ConfiguredPrice, _LinearRates)):
            return price.cost(usage)
        return Decimal(price.calc_price(genai_usage(usage))["total_price"])

    def bound(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> Decimal:
        """An upper bound of a call's cost: every input token at the dearest input rate
        (plain or cache write), every output token at the output rate."""
        plain = self.cost(
            provider, model, TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens)
        )
        written = self.cost(
            provider,
            model,
            TokenUsage(
                input_tokens=input_tokens,
                cache_write_tokens=input_tokens,
                output_tokens=output_tokens,
            ),
        )
        return max(plain, written)

    def bound_rates(self, provider: str, model: str) -> tuple[int, int] | None:
        """For a flat price: (dearest input rate, output rate) in nano-dollars per million
        tokens, exact integers, so a bound is integer arithmetic (the ledger's hot path).
        None for tiered prices, or rates finer than a nano-dollar per million tokens."""
        price = self._price_of(provider, model)
        if isinstance(price, ConfiguredPrice):
            inputs = [price.input_mtok, price.cache_write_mtok or price.input_mtok]
            output = price.output_mtok
        elif isinstance(price, _LinearRates):
            inputs, output = [price.plain, price.cache_write], price.output
        else:
            return None
        rates = [max(inputs) * 1_000_000_000, output * 1_000_000_000]
        if any(r != r.to_integral_value() or r < 0 for r in rates):
            return None
        return int(rates[0]), int(rates[1])

    def output_token_price(self, provider: str, model: str) -> Decimal:
        return self.cost(provider, model, TokenUsage(output_tokens=1_000_000)) / _MTOK


@functools.lru_cache(maxsize=256)
def context_window(provider: str, model: str) -> int | None:
    """The model's context window per genai-prices (None if it does not know it): the hard
    ceiling of its output, and of a request's input.

    genai-prices is imported on first use: its price tables take ~0.3 s to load, and the
    daemon's start should not wait for them."""
    if not model:
        return None
    from genai_prices import data_snapshot

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    window = getattr(info, "context_window", None)
    return window if isinstance(window, int) and window > 0 else None
