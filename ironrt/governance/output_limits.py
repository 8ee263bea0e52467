"""The most output tokens a model can emit in one call: the budget's output bound.

Before a call is forwarded the budget reserves an UPPER bound of its cost. When the
request sets no `max_tokens` (`max_completion_tokens`, `max_output_tokens`), the output
part of that bound is the model's maximum OUTPUT, which is far below its context window
for most models (gpt-4o: 16,384 out of a 128,000 window): reserving the window would hold
back eight times the budget the call can possibly spend, and refuse calls that fit.

The table below is that maximum per model family, as the providers publish it. The two
ways it can be wrong are not symmetric: an entry that is too LOW lets a call spend more
than was reserved (a budget could be overspent), an entry that is too HIGH only holds
more budget than needed until the call settles. So every uncertain figure is rounded up,
and a family without a documented figure gets `DEFAULT_MAX_OUTPUT` (capped by the
context window genai-prices knows, since no output exceeds the window).

Users can override any model by exact name in `$IRONRT_HOME/prices.toml`:

    [models."my-finetune"]
    max_output_tokens = 32768
"""

from __future__ import annotations

import functools
import re
from typing import Any

from ironrt.governance.prices_table import model_entries
from ironrt.governance.pricing import context_window

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "OutputLimits",
    "configured_output_limits",
    "output_limits",
    "table_max_output",
]

#: For models no rule matches (capped by the context window when genai-prices knows it):
#: the largest max output of current frontier models, so a new model is rarely under-held.
DEFAULT_MAX_OUTPUT = 128_000

# Sources (checked 2026): OpenAI's model pages (platform.openai.com/docs/models/<id>,
# "Max output tokens"), Anthropic's models overview and per-model pages
# (platform.claude.com/docs/en/models/...). Where providers, gateways and SDK model tables
# disagreed, the larger figure is used. `[-.]` accepts both `4-5` and `4.5` spellings.
_RULES: tuple[tuple[str, int], ...] = (
    # ---- Anthropic ---------------------------------------------------------------------
    # Claude 5 generation and Claude 4.6+ (Opus 4.6/4.7/4.8, Sonnet 4.6): 128K documented.
    # (Mythos: no figure found; the fallback would give the same 128K.)
    (r"claude-(?:opus|sonnet|haiku|fable|mythos)-5", 128_000),
    (r"claude-5", 128_000),
    (r"claude-(?:opus|sonnet)-4[-.][6-9]", 128_000),
    (r"claude-4[-.][6-9]-(?:opus|sonnet)", 128_000),
    # Claude 4.5: Opus, Sonnet and Haiku 4.5 all 64K.
    (r"claude-(?:opus|sonnet|haiku)-4[-.]5", 64_000),
    (r"claude-4[-.]5-(?:opus|sonnet|haiku)", 64_000),
    # Opus 4 and 4.1: 32K.
    (r"claude-4(?:[-.]1)?-opus", 32_000),
    (r"claude-opus-4", 32_000),
    # Sonnet 4: 64K.
    (r"claude-sonnet-4", 64_000),
    (r"claude-4-sonnet", 64_000),
    # Claude 3.7 Sonnet: 64K by default, 128K with the `output-128k-2025-02-19` beta
    # header. The header is the agent's to send, so the bound is what the API can emit
    # with it: 128K. (Messages requires `max_tokens`, so this applies only to requests
    # that omit it, which the API refuses anyway.)
    (r"claude-(?:3[-.]7-sonnet|sonnet-3[-.]7)", 128_000),
    # Claude 3.5 Sonnet / Haiku: 8,192 (the June 2024 Sonnet needed a beta header for
    # 8,192 and had 4,096 without it: the larger figure).
    (r"claude-3[-.]5-(?:sonnet|haiku)", 8_192),
    # Claude 3 Opus, Sonnet, Haiku, Claude 2.x and Instant: 4,096.
    (r"claude-3-(?:opus|sonnet|haiku)", 4_096),
    (r"claude-(?:2|v2|instant)", 4_096),
    # claude-v1 (retired): no figure published per model; falls back.
    # ---- OpenAI: GPT-5 family ----------------------------------------------------------
    # ChatGPT-tuned snapshots (`gpt-5-chat-latest`, `gpt-5.1-chat-latest`, ...): 16,384;
    # a third-party table says 32,768 for gpt-5-chat: the larger figure.
    (r"gpt-5(?:[-.][12])?-chat", 32_768),
    (r"gpt-5-pro", 272_000),  # 400K window, 272K output
    # gpt-5, -mini, -nano, -codex, 5.1 (codex, codex-max, codex-mini), 5.2 (pro), 5.4 (mini,
    # nano, pro), 5.5 (pro): 128,000 each.
    # A digit after `gpt-5-` is a version (`gpt-5-3`, `gpt-5-6-luna`), not a snapshot date.
    (r"gpt-5(?:[-.](?:1|2|4|5))?(?:$|-(?!\d(?:$|[-.])))", 128_000),
    (r"gpt-5[-.]3-codex", 128_000),
    # gpt-5.3 (chat, 128K window), 5.6 *, gpt-6 *: no published figure, falls back.
    # ---- OpenAI: GPT-4.x and GPT-4o ----------------------------------------------------
    (r"gpt-4[-.]1(?!\d)", 32_768),  # gpt-4.1, -mini, -nano
    (r"gpt-4[-.]5", 16_384),  # gpt-4.5-preview
    (r"gpt-4o:extended", 64_000),  # the 64K-output alpha
    (r"gpt-4o-(?:mini-)?realtime", 4_096),
    (r"gpt-4o-(?:mini-)?(?:transcribe|tts)", 16_384),  # audio models, upper bound
    (r"gpt-4o-2024-05-13", 4_096),
    (r"gpt-4o", 16_384),  # gpt-4o, -mini, -audio/-search previews, fine-tunes
    (r"chatgpt-4o", 16_384),
    (r"gpt-4-(?:turbo|\d{4}-preview|vision|1106)", 4_096),
    (r"gpt-4-32k", 32_768),  # no separate output cap: the window
    (r"gpt-4(?:$|-)", 8_192),  # gpt-4, -0314, -0613 (no separate cap: the window)
    # ---- OpenAI: reasoning models ------------------------------------------------------
    (r"o1-mini", 65_536),
    (r"o1-preview", 32_768),
    (r"o(?:1|3|4)(?:$|-)", 100_000),  # o1, o1-pro, o3, o3-mini/pro/deep-research, o4-mini
    (r"codex-mini", 100_000),
    (r"computer-use", 1_024),
    # ---- OpenAI: open-weight, audio and realtime ---------------------------------------
    (r"gpt-oss", 131_072),
    (r"gpt-audio", 16_384),
    # gpt-realtime (32K window): the window; realtime-2 and later fall back.
    (r"gpt-realtime(?:$|-mini|-20)", 32_000),
    # ---- OpenAI: GPT-3.5 and legacy completions ----------------------------------------
    (r"gpt-3[-.]?5-turbo-16k", 16_385),  # no separate output cap: the window
    (r"gpt-3[-.]?5-turbo-instruct", 4_096),
    (r"gpt-3[-.]?5", 4_096),  # gpt-3.5-turbo and its snapshots (0301, 0613, 1106, 0125)
    (r"(?:davinci|babbage)-002", 16_384),
    (r"text-davinci-00[23]", 4_097),
    (r"(?:text-)?(?:ada|babbage|curie|davinci)(?:$|-001)", 2_049),
)


@functools.cache
def output_limits() -> tuple[tuple[re.Pattern[str], int], ...]:
    """The rules, compiled: matched in order against the start of the normalized model id.
    Compiled at the first model looked up, not at import (~3.5 ms off the daemon's start;
    each model's figure is then cached by `OutputLimits`)."""
    return tuple((re.compile(pattern), tokens) for pattern, tokens in _RULES)


#: Routing prefixes a model id may carry: `openai/`, `anthropic.` (Bedrock, optionally
#: with a region such as `us.`), `ft:` (OpenAI fine-tunes keep their base model's cap).
_PREFIX = re.compile(r"^(?:[a-z]{2,4}\.)?(?:anthropic\.|openai\.)|^ft:")


def _normalize(model: str) -> str:
    name = model.strip().lower().rsplit("/", 1)[-1]
    return _PREFIX.sub("", name, count=1)


def table_max_output(model: str) -> int | None:
    """The table's figure for `model`, or None when no rule matches it."""
    name = _normalize(model)
    for pattern, tokens in output_limits():
        if pattern.match(name):
            return tokens
    return None


class OutputLimits:
    """Max output tokens per (provider, model): configured override > table > fallback."""

    def __init__(self, configured: dict[str, int] | None = None) -> None:
        self.configured = dict(configured or {})
        self._cache: dict[tuple[str, str], int] = {}

    def max_output(self, provider: str, model: str) -> int:
        key = (provider, model)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        value = self.configured.get(model)
        if value is None:
            value = table_max_output(model)
        if value is None:
            window = context_window(provider, model)
            value = min(DEFAULT_MAX_OUTPUT, window) if window else DEFAULT_MAX_OUTPUT
        self._cache[key] = value
        return value


def configured_output_limits(data: dict[str, Any], source: str) -> dict[str, int]:
    """`max_output_tokens` of each `[models."NAME"]` table of a decoded prices.toml
    (every entry checked by `prices_table.model_entries`).

    An entry may set only `max_output_tokens` (a model genai-prices prices, whose output
    cap the table gets wrong), only prices, or both; entries without it are skipped.
    """
    return {
        model: e.max_output_tokens
        for model, e in model_entries(data, source).items()
        if e.max_output_tokens is not None
    }
