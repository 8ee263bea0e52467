"""Max output tokens: the budget's output bound when a request sets no cap."""

from __future__ import annotations

from pathlib import Path

import pytest
from genai_prices import data_snapshot

from ironrt.governance.output_limits import (
    DEFAULT_MAX_OUTPUT,
    OutputLimits,
    table_max_output,
)
from ironrt.governance.pricing import context_window
from ironrt.router.prices_file import load_output_limits


@pytest.mark.parametrize(
    ("provider", "model", "tokens"),
    [
        ("openai", "gpt-4o", 16_384),
        ("openai", "gpt-4o-2024-08-06", 16_384),
        ("openai", "gpt-4o-2024-05-13", 4_096),
        ("openai", "gpt-4o-mini-2024-07-18", 16_384),
        ("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc123", 16_384),
        ("openai", "gpt-4.1-2025-04-14", 32_768),
        ("openai", "gpt-4.1-nano", 32_768),
        ("openai", "gpt-4-turbo-2024-04-09", 4_096),
        ("openai", "gpt-4-1106-preview", 4_096),
        ("openai", "gpt-4-0613", 8_192),
        ("openai", "gpt-3.5-turbo-0125", 4_096),
        ("openai", "o1-2024-12-17", 100_000),
        ("openai", "o1-mini-2024-09-12", 65_536),
        ("openai", "o3-mini-2025-01-31", 100_000),
        ("openai", "o4-mini", 100_000),
        ("openai", "gpt-5-2025-08-07", 128_000),
        ("openai", "gpt-5-mini", 128_000),
        ("openai", "gpt-5.1-codex-max", 128_000),
        ("openai", "gpt-5-pro-2025-10-06", 272_000),
        ("openai", "gpt-5-chat-latest", 32_768),
        ("anthropic", "claude-3-haiku-20240307", 4_096),
        ("anthropic", "claude-3-opus-20240229", 4_096),
        ("anthropic", "claude-3-5-sonnet-20241022", 8_192),
        ("anthropic", "claude-3-5-haiku-latest", 8_192),
        ("anthropic", "claude-3-7-sonnet-20250219", 128_000),
        ("anthropic", "claude-sonnet-4-20250514", 64_000),
        ("anthropic", "claude-opus-4-20250514", 32_000),
        ("anthropic", "claude-opus-4-1-20250805", 32_000),
        ("anthropic", "claude-sonnet-4-5-20250929", 64_000),
        ("anthropic", "claude-sonnet-4.5", 64_000),
        ("anthropic", "claude-haiku-4-5-20251001", 64_000),
        ("anthropic", "claude-opus-4-5-20251101", 64_000),
        ("anthropic", "claude-opus-4-6", 128_000),
        ("anthropic", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", 8_192),
    ],
)
def test_snapshots_match_their_family(provider: str, model: str, tokens: int) -> None:
    assert OutputLimits().max_output(provider, model) == tokens


def test_never_the_context_window() -> None:
    limits = OutputLimits()
    assert context_window("openai", "gpt-4o") == 128_000
    assert limits.max_output("openai", "gpt-4o") == 16_384
    assert limits.max_output("openai", "gpt-4.1") == 32_768  # 1M window


def test_every_text_model_genai_prices_knows_has_a_bound() -> None:
    """Each chat/text model of both providers gets a positive bound, never above the
    fallback unless its table entry says so (gpt-5-pro, gpt-oss)."""
    limits = OutputLimits()
    snapshot = data_snapshot.get_snapshot()
    for provider in snapshot.providers:
        if provider.id not in ("openai", "anthropic"):
            continue
        for model in provider.models:
            bound = limits.max_output(provider.id, model.id)
            assert bound > 0
            if table_max_output(model.id) is None:
                window = model.context_window
                assert bound == min(DEFAULT_MAX_OUTPUT, window or DEFAULT_MAX_OUTPUT)


def test_fallback_is_capped_by_the_window() -> None:
    limits = OutputLimits()
    assert table_max_output("my-own-model") is None
    assert limits.max_output("openai", "my-own-model") == DEFAULT_MAX_OUTPUT
    # No rule for embeddings (they have no output): the fallback, capped by the window.
    assert limits.max_output("openai", "text-embedding-3-small") == 8_192


def test_configured_override_wins_and_is_exact(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        """
[models."gpt-4o"]
max_output_tokens = 20000

[models."my-finetune"]
input_mtok = 0.30
output_mtok = 1.20
max_output_tokens = 4096

[models."priced-only"]
input_mtok = 1
output_mtok = 2
"""
    )
    configured = load_output_limits(prices)
    assert configured == {"gpt-4o": 20_000, "my-finetune": 4_096}
    limits = OutputLimits(configured)
    assert limits.max_output("openai", "gpt-4o") == 20_000
    assert limits.max_output("openai", "gpt-4o-2024-08-06") == 16_384  # exact names only
    assert limits.max_output("openai", "my-finetune") == 4_096
    assert limits.max_output("openai", "priced-only") == DEFAULT_MAX_OUTPUT


def test_cached_per_provider_and_model() -> None:
    limits = OutputLimits({"m": 10})
    assert limits.max_output("openai", "m") == 10
    limits.configured["m"] = 20  # a cached answer does not change
    assert limits.max_output("openai", "m") == 10
    assert limits.max_output("anthropic", "m") == 20


def test_load_missing_and_invalid(tmp_path: Path) -> None:
    assert load_output_limits(tmp_path / "absent.toml") == {}
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_output_limits(empty) == {}
    for bad in ("0", '"lots"', "true", "1.5"):
        path = tmp_path / "bad.toml"
        path.write_text(f'[models."x"]\nmax_output_tokens = {bad}\n')
        with pytest.raises(ValueError, match="max_output_tokens"):
            load_output_limits(path)
