"""What a provider's reported usage must satisfy to be believed (`usage_problem`): each
count in range, named when it is not, and the counts consistent with each other."""

from __future__ import annotations

import pytest

from ironrt.governance.charging import MAX_REPORTED_TOKENS, usage_problem
from ironrt.governance.flow import TokenUsage

FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def test_a_plausible_usage_has_no_problem() -> None:
    usage = TokenUsage(
        input_tokens=100,
        output_tokens=50,
        cached_tokens=40,
        cache_write_tokens=10,
        reasoning_tokens=20,
    )
    assert usage_problem(usage, output_cap=50, choices=1) is None


@pytest.mark.parametrize("name", FIELDS)
def test_each_count_out_of_range_is_named(name: str) -> None:
    negative = TokenUsage(**{**dict.fromkeys(FIELDS, 0), name: -3})
    assert usage_problem(negative, None, 1) == f"{name} is negative (-3)"
    absurd = TokenUsage(**{name: MAX_REPORTED_TOKENS + 1})
    assert usage_problem(absurd, None, 1) == f"{name} is absurd ({MAX_REPORTED_TOKENS + 1})"


def test_counts_must_agree_with_each_other_and_the_cap() -> None:
    assert usage_problem(TokenUsage(input_tokens=5, cached_tokens=6), None, 1) == (
        "cached tokens exceed the input tokens"
    )
    assert usage_problem(TokenUsage(output_tokens=5, reasoning_tokens=6), None, 1) == (
        "reasoning tokens exceed the output tokens"
    )
    over = usage_problem(TokenUsage(output_tokens=21), output_cap=10, choices=2)
    assert over == "21 output tokens reported, but the provider was told to produce at most 20"
    assert usage_problem(TokenUsage(output_tokens=20), output_cap=10, choices=2) is None
