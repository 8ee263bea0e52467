"""The OpenAI API family: chat completions, Responses, embeddings, models and the
Responses input count, as OpenAI serves them and as OpenAI-compatible providers (a
registry entry of family `openai`) serve them too.

Each endpoint's shapes live in its surface module (`surfaces.chat`, `surfaces.responses`,
`surfaces.embeddings`, `surfaces.count`, `surfaces.models`); auth and errors are the
entry's (`shapes`). Exact input counts of chat calls translate them to the Responses
format (`openai_count`; `chat_to_responses_input` is re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ironrt.governance.flow import Endpoint
from ironrt.providers.base import ProviderAdapter
from ironrt.providers.openai_count import chat_to_responses_input
from ironrt.providers.surfaces import (
    ApiSurface,
    ChatSurface,
    EmbeddingsSurface,
    ModelsSurface,
    ResponsesCountSurface,
    ResponsesSurface,
)
from ironrt.settings_table import OPENAI_ENTRY, ProviderEntry

__all__ = ["OpenAIAdapter", "chat_to_responses_input"]


class OpenAIAdapter(ProviderAdapter):
    posts: ClassVar[Mapping[str, Endpoint]] = {
        "/v1/chat/completions": "chat.completions",
        "/v1/responses": "responses",
        "/v1/responses/input_tokens": "responses.input_tokens",
        "/v1/embeddings": "embeddings",
    }
    surfaces: ClassVar[Mapping[str, ApiSurface]] = {
        "chat.completions": ChatSurface(),
        "responses": ResponsesSurface(),
        "responses.input_tokens": ResponsesCountSurface(),
        "embeddings": EmbeddingsSurface(),
        "models": ModelsSurface("openai"),
    }
    default_entry: ClassVar[ProviderEntry] = OPENAI_ENTRY
