"""Provider adapters, and how the router picks one for an incoming request.

A registered provider (`registry`) has its own path prefix (`/acme/v1/...`), which names
it. The two built-in providers share `/v1/...`, so the router tells them apart by path
first (only Anthropic has `/v1/messages`; only OpenAI `/v1/chat/completions`,
`/v1/responses` and `/v1/embeddings`) and by headers second, on the paths both have
(`/v1/models`): the Anthropic SDK always sends `anthropic-version` and authenticates with
`x-api-key`, the OpenAI SDK sends `Authorization: Bearer`. Anything else is treated as
OpenAI, the API most third-party clients speak.
"""

from __future__ import annotations

from collections.abc import Mapping

from ironrt.providers.anthropic import AnthropicAdapter
from ironrt.providers.base import ProviderAdapter, get_header
from ironrt.providers.openai import OpenAIAdapter
from ironrt.providers.registry import ADAPTERS, adapter, prefixed, register

__all__ = [
    "ADAPTERS",
    "ANTHROPIC",
    "OPENAI",
    "AnthropicAdapter",
    "OpenAIAdapter",
    "ProviderAdapter",
    "adapter_for",
    "register",
]

OPENAI = adapter("openai")
ANTHROPIC = adapter("anthropic")


def adapter_for(path: str, headers: Mapping[str, str]) -> ProviderAdapter | None:
    """The adapter for a request, or None if the path is no provider's API path
    (`/v1/...`, or `/NAME/v1/...` for a registered provider)."""
    path = path.split("?", 1)[0]
    if path != "/v1" and not path.startswith("/v1/"):
        return prefixed(path)
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return ANTHROPIC
    if path in OpenAIAdapter.posts:
        # Only OpenAI has these: an Anthropic-looking header (x-api-key) must not make
        # /v1/chat/completions an Anthropic path that "cannot be metered".
        return OPENAI
    if get_header(headers, "anthropic-version") is not None:
        return ANTHROPIC
    if get_header(headers, "x-api-key") is not None:
        return ANTHROPIC
    return OPENAI
