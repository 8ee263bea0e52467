"""The Anthropic API family: messages, their count and models, as Anthropic serves them
(and any provider registered with family `anthropic`).

Each endpoint's shapes live in its surface module (`surfaces.messages`, `surfaces.count`,
`surfaces.models`); auth (`x-api-key`, or a bearer token for `ANTHROPIC_AUTH_TOKEN`) and
the error shape are the entry's (`shapes`, which holds `ERROR_TYPES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ironrt.governance.flow import Endpoint
from ironrt.providers.base import ProviderAdapter
from ironrt.providers.shapes import ERROR_TYPES, error_type_for_status
from ironrt.providers.surfaces import (
    ApiSurface,
    MessagesCountSurface,
    MessagesSurface,
    ModelsSurface,
)
from ironrt.settings_table import ANTHROPIC_ENTRY, ProviderEntry

__all__ = ["ERROR_TYPES", "AnthropicAdapter", "error_type_for_status"]


class AnthropicAdapter(ProviderAdapter):
    posts: ClassVar[Mapping[str, Endpoint]] = {
        "/v1/messages": "messages",
        "/v1/messages/count_tokens": "messages.count_tokens",
    }
    surfaces: ClassVar[Mapping[str, ApiSurface]] = {
        "messages": MessagesSurface(),
        "messages.count_tokens": MessagesCountSurface(),
        "models": ModelsSurface("anthropic"),
    }
    default_entry: ClassVar[ProviderEntry] = ANTHROPIC_ENTRY
