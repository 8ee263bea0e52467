"""One module per API surface: chat completions, Responses, embeddings, messages, the
count endpoints and the model list (see `base.ApiSurface`)."""

from __future__ import annotations

from ironrt.providers.surfaces.base import ApiSurface
from ironrt.providers.surfaces.chat import ChatSurface
from ironrt.providers.surfaces.count import MessagesCountSurface, ResponsesCountSurface
from ironrt.providers.surfaces.embeddings import EmbeddingsSurface
from ironrt.providers.surfaces.messages import MessagesSurface
from ironrt.providers.surfaces.models import ModelsSurface
from ironrt.providers.surfaces.responses import ResponsesSurface

__all__ = [
    "ApiSurface",
    "ChatSurface",
    "EmbeddingsSurface",
    "MessagesCountSurface",
    "MessagesSurface",
    "ModelsSurface",
    "ResponsesCountSurface",
    "ResponsesSurface",
]
