"""What one API surface is to the router: the base every surface module builds on.

Provider variation is mostly per API surface, not per vendor: chat completions look the
same at OpenAI and at any OpenAI-compatible provider, and differ from the Responses API of
the same vendor in everything that matters (where the text is, where usage is, how a
stream ends). So each surface is one module (`chat`, `responses`, `embeddings`,
`messages`, `count`, `models`) holding all of it, the offline provider's answer included,
and an adapter only picks the surface of an endpoint from a table.

The base class is a path that has none of it (an unmetered path): no text, no usage, no
caps, and no offline answer. Surfaces are stateless; one instance serves every call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from ironrt.governance.flow import StreamEvent, TextSlot, TokenUsage
from ironrt.providers.surfaces.replies import OfflineCall, OfflineReply, error_reply

if TYPE_CHECKING:
    from ironrt.providers.base import ProviderAdapter

__all__ = ["ApiSurface"]


class ApiSurface:
    """One endpoint's shapes. Every method reads only what it is given and does no I/O."""

    #: The fields of a request body the router and the policies walk (lists they iterate,
    #: objects they look into), as a msgspec type: a body that does not fit is answered
    #: 400 before anything reads it. Fields only tested with `isinstance` need no entry.
    shape: ClassVar[type[msgspec.Struct] | None] = None
    #: A request with `"stream": true` is answered with an event stream.
    streams: ClassVar[bool] = False
    #: A non-streamed response can hold text (`response_texts`); one that cannot is read
    #: for its usage and model alone.
    has_text: ClassVar[bool] = False

    # ---- request shape ----------------------------------------------------------------

    def ensure_stream_usage(self, body: dict[str, Any]) -> bool:
        """Make a stream report usage; True if the request was changed to do so."""
        return False

    def is_usage_only_chunk(self, ev: StreamEvent) -> bool:
        return False

    def closes_answer(self, ev: StreamEvent) -> bool:
        return False

    def max_output_tokens(self, body: Any) -> int | None:
        return None

    def set_max_output_tokens(self, body: dict[str, Any], n: int) -> None:
        return None

    def choices(self, body: Any) -> int:
        return 1

    def input_extras(self, body: dict[str, Any]) -> tuple[int, bool, bool]:
        """(number of images, tools declared, input referenced but not included)."""
        return 0, False, False

    # ---- exact input counts -------------------------------------------------------------

    def count_request(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        return None

    def count_margin(self, body: dict[str, Any]) -> int:
        return 0

    # ---- usage --------------------------------------------------------------------------

    def usage_from_response(self, body: Any) -> TokenUsage | None:
        return None

    def usage_from_event(self, ev: StreamEvent, acc: TokenUsage) -> bool:
        return False

    def stream_model(self, ev: StreamEvent) -> str | None:
        return None

    # ---- text access --------------------------------------------------------------------

    def request_texts(self, body: dict[str, Any], on_change: Callable[[], None]) -> list[TextSlot]:
        return []

    def response_texts(self, body: Any) -> list[TextSlot]:
        return []

    def event_texts(self, ev: StreamEvent) -> list[TextSlot]:
        return []

    def event_closes(self, ev: StreamEvent) -> list[Hashable]:
        return []

    def text_event(self, channel: Hashable, text: str, like: StreamEvent) -> StreamEvent:
        raise ValueError(f"no delta event carries channel {channel!r}")

    # ---- the offline provider -------------------------------------------------------------

    def offline(self, adapter: ProviderAdapter, body: Any, call: OfflineCall) -> OfflineReply:
        """The offline provider's answer (raising `BadRequest` answers 400)."""
        where = call.path or call.endpoint
        return error_reply(adapter, 404, f"The offline provider does not serve {where}.")
