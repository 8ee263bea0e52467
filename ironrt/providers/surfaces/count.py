"""The free count endpoints: OpenAI `POST /v1/responses/input_tokens` and Anthropic
`POST /v1/messages/count_tokens`.

A count request carries the input of the call it counts, in that call's own format, so
its texts, its shape and what its bytes cannot bound are the counted surface's; it has no
output, no usage and no stream. The offline provider answers with the same text length / 4
the call would be billed, so a count of a request (or of its translation into the count
endpoint's format, which carries every text unchanged) is never below the call's billed
input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from ironrt.governance.flow import TextSlot
from ironrt.providers.surfaces.base import ApiSurface
from ironrt.providers.surfaces.messages import MessagesShape, messages_input_extras, messages_texts
from ironrt.providers.surfaces.replies import (
    OfflineCall,
    OfflineReply,
    input_tokens,
    json_reply,
    require,
)
from ironrt.providers.surfaces.responses import (
    ResponsesShape,
    responses_input_extras,
    responses_texts,
)

if TYPE_CHECKING:
    from ironrt.providers.base import ProviderAdapter

__all__ = ["MessagesCountSurface", "ResponsesCountSurface"]


class ResponsesCountSurface(ApiSurface):
    """`POST /v1/responses/input_tokens`: a Responses request's input, counted."""

    shape: ClassVar[type[msgspec.Struct] | None] = ResponsesShape

    def input_extras(self, body: dict[str, Any]) -> tuple[int, bool, bool]:
        return responses_input_extras(body)

    def request_texts(self, body: dict[str, Any], on_change: Callable[[], None]) -> list[TextSlot]:
        return responses_texts(body, on_change)

    def offline(self, adapter: ProviderAdapter, body: Any, call: OfflineCall) -> OfflineReply:
        tokens = input_tokens(self, require(body))
        return json_reply(adapter, {"object": "response.input_tokens", "input_tokens": tokens})


class MessagesCountSurface(ApiSurface):
    """`POST /v1/messages/count_tokens`: a Messages request's input, counted."""

    shape: ClassVar[type[msgspec.Struct] | None] = MessagesShape

    def input_extras(self, body: dict[str, Any]) -> tuple[int, bool, bool]:
        return messages_input_extras(body)

    def request_texts(self, body: dict[str, Any], on_change: Callable[[], None]) -> list[TextSlot]:
        return messages_texts(body, on_change)

    def offline(self, adapter: ProviderAdapter, body: Any, call: OfflineCall) -> OfflineReply:
        tokens = input_tokens(self, require(body, "model", "messages"))
        return json_reply(adapter, {"input_tokens": tokens})
