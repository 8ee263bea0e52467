"""Provider adapters, and how the router picks one for an incoming request.

Both SDKs talk to the same router port, and both use `/v1/...` paths, so the router tells
them apart by path first (only Anthropic has `/v1/messages`) and by headers second: the
Anthropic SDK always sends `anthropic-version` and authenticates with `x-api-key`, the
OpenAI SDK sends `Authorization: Bearer`. Anything else is treated as OpenAI, the API
most third-party clients speak.
"""

from __future__ import annotations

from collections.abc import Mapping

from ironrt.providers.anthropic import AnthropicAdapter
from ironrt.providers.base import ProviderAdapter, get_header
from ironrt.providers.openai import OpenAIAdapter

__all__ = ["ADAPTERS", "AnthropicAdapter", "OpenAIAdapter", "ProviderAdapter", "adapter_for"]

OPENAI = OpenAIAdapter()
ANTHROPIC = AnthropicAdapter()

#: One stateless instance per provider, by `ProviderAdapter.name`.
ADAPTERS: dict[str, ProviderAdapter] = {OPENAI.name: OPENAI, ANTHROPIC.name: ANTHROPIC}


def adapter_for(path: str, headers: Mapping[str, str]) -> ProviderAdapter | None:
    """The adapter for a request, or None if the path is not an API path (`/v1/...`)."""
    path = path.split("?", 1)[0]
    if path != "/v1" and not path.startswith("/v1/"):
        return None
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return ANTHROPIC
    if get_header(headers, "anthropic-version") is not None:
        return ANTHROPIC
    if get_header(headers, "x-api-key") is not None:
        return ANTHROPIC
    return OPENAI
