"""The model list (`GET /v1/models`, `GET /v1/models/{id}`): free, no text, no usage.

The two families shape it differently (OpenAI `{"object": "list", "data": [...]}`,
Anthropic `{"data": [...], "has_more", "first_id", "last_id"}` with display names); the
offline provider lists the models of the provider's registry entry.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from ironrt.providers.surfaces.base import ApiSurface
from ironrt.providers.surfaces.replies import OfflineCall, OfflineReply, json_reply

if TYPE_CHECKING:
    from ironrt.providers.base import ProviderAdapter

__all__ = ["ModelsSurface"]

_ONE = "/v1/models/"


class ModelsSurface(ApiSurface):
    def __init__(self, style: Literal["openai", "anthropic"]) -> None:
        self.style = style

    def offline(self, adapter: ProviderAdapter, body: Any, call: OfflineCall) -> OfflineReply:
        stem = call.path.split("?", 1)[0].rstrip("/")
        wanted = stem[len(_ONE) :] if stem.startswith(_ONE) else None
        ids = [wanted] if wanted else list(adapter.entry.models)
        if self.style == "anthropic":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(call.created))
            described: list[dict[str, Any]] = [
                {
                    "type": "model",
                    "id": m,
                    "display_name": m.replace("-", " ").title(),
                    "created_at": stamp,
                    "lifecycle": "active",
                }
                for m in ids
            ]
            if wanted:
                return json_reply(adapter, described[0])
            first, last = (ids[0], ids[-1]) if ids else (None, None)
            page = {"data": described, "has_more": False, "first_id": first, "last_id": last}
            return json_reply(adapter, page)
        owner = "ironrt-offline"
        models = [
            {"id": m, "object": "model", "created": call.created, "owned_by": owner} for m in ids
        ]
        return json_reply(adapter, models[0] if wanted else {"object": "list", "data": models})
