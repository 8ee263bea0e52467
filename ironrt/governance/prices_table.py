"""The `[models."NAME"]` tables of a decoded prices.toml, checked once for both of their
readers (`pricing.configured_prices`, `output_limits.configured_output_limits`).

A price is money: a negative one would give every call's cost back to its budget, a NaN
or an infinite one would fail every call to the model, and a misspelt key would leave a
model unpriced or uncapped without a word. So every entry is checked whole, before the
daemon starts, and any of these stops the start with a line naming the file, the model
and the key.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from ironrt.suggest import did_you_mean

#: USD per million tokens: finite, >= 0, and at most $1 a token (no model costs more;
#: a bound that refuses `inf` and a price typed in the wrong unit by orders of magnitude).
Price = Annotated[float, Meta(ge=0, le=1_000_000)]


class ModelEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    input_mtok: Price | None = None
    output_mtok: Price | None = None
    cache_read_mtok: Price | None = None
    cache_write_mtok: Price | None = None
    max_output_tokens: Annotated[int, Meta(ge=1)] | None = None


_KEYS = sorted(ModelEntry.__struct_fields__)


def model_entries(data: dict[str, Any], source: str) -> dict[str, ModelEntry]:
    """Each model's entry; ValueError naming `source`, the model and the key."""
    for key in data:
        if key != "models":
            raise ValueError(f"{source}: unknown table {key!r}{did_you_mean(key, ['models'])}")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ValueError(f'{source}: `models` must be tables: [models."NAME"]')
    out: dict[str, ModelEntry] = {}
    for model, spec in models.items():
        if not isinstance(spec, dict):
            raise ValueError(f'{source}: model {model!r} must be a table: [models."{model}"]')
        for name in spec:
            if name not in _KEYS:
                raise ValueError(
                    f"{source}: model {model!r}: unknown key {name!r}{did_you_mean(name, _KEYS)}"
                )
        try:
            out[model] = msgspec.convert(spec, ModelEntry)
        except msgspec.ValidationError as exc:
            bad = next((k for k in _KEYS if k in spec and not _valid(k, spec[k])), None)
            if bad is None:  # not one key's fault (none is known to be): msgspec's words
                raise ValueError(f"{source}: model {model!r}: {exc}") from None
            raise ValueError(
                f"{source}: model {model!r}: {bad} must be {_MUST[bad]}, got {spec[bad]!r}"
            ) from None
    return out


_MUST = {
    **{k: "a number of USD per million tokens, 0 <= x <= 1000000" for k in _KEYS},
    "max_output_tokens": "a positive integer",
}


def _valid(key: str, value: object) -> bool:
    try:
        msgspec.convert({key: value}, ModelEntry)
    except msgspec.ValidationError:
        return False
    return True
