"""What the router and the policies need to know about one provider's HTTP API.

The router is provider-neutral: it asks a `ProviderAdapter` which endpoint a request is,
where the agent's token sits and how the real key goes upstream, how the provider shapes
its errors, where usage is reported (in a body or in stream events), and where text sits
in requests, responses and stream events (as `TextSlot`s, so policies never look at a
provider's JSON). Adapters are stateless and do no I/O; one instance serves every call.

Conventions every adapter follows (the router and policies rely on them):

- Upstream URL = base URL (no trailing slash) + the path the agent requested (which starts
  with `/v1/`). If the base itself ends in `/v1` (the SDKs' own `base_url` convention,
  e.g. `IRONRT_OPENAI_BASE_URL=http://127.0.0.1:9000/v1`) that `/v1` is not repeated. So
  both `http://127.0.0.1:PORT` and `http://127.0.0.1:PORT/v1` work, and so does a gateway
  prefix such as `https://gw.example.com/openai/v1`.
- `TokenUsage.input_tokens` is the TOTAL input, cache reads and writes included (OpenAI's
  `prompt_tokens`/`input_tokens` already are; Anthropic's `input_tokens` excludes the
  cache, so the adapter adds `cache_read_input_tokens` and `cache_creation_input_tokens`).
  `cached_tokens` and `cache_write_tokens` are parts of it, `reasoning_tokens` is a part of
  `output_tokens`. That is what `genai_prices.Usage` expects (`input_tokens` total,
  `cache_read_tokens`/`cache_write_tokens` priced as discounted parts of it).
- Channels are tuples naming a stream of text hierarchically, e.g. `("choice", 0,
  "content")`. A key returned by `event_closes` closes every channel that equals it or
  starts with it (`channel_closed`); `()` closes every channel. A policy holding text of
  a closed channel emits it (with `text_event`) before the closing event; a slot of the
  closing event whose own channel it closes is complete and must be handled whole.
- A slot whose `where` is `"repeat"` carries text the stream already delivered in deltas
  (the Responses API repeats the full text in its `*.done` events and the final
  response): a redacting policy must rewrite it the same way, a detecting policy should
  not count it twice.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from typing import Any, ClassVar

import msgspec
import yarl

from ironrt.governance.flow import (
    Endpoint,
    Flow,
    StreamEvent,
    TextSlot,
    TokenUsage,
    channel_closed,
)
from ironrt.governance.pricing import context_window

__all__ = [
    "FILE_TOKENS_ALLOWANCE",
    "IMAGE_TOKENS_ALLOWANCE",
    "TOOLS_TOKENS_ALLOWANCE",
    "BodyProblem",
    "ProviderAdapter",
    "body_problem",
    "channel_closed",
    "content_slots",
    "context_window",
    "dict_value",
    "event_setter",
    "get_header",
    "int_value",
    "join_url",
    "json_string_slots",
    "noop",
    "str_setter",
]

#: Tokens reserved per image on top of the body's bytes: an image's token cost does not
#: follow its bytes (a URL is short, a compressed PNG small). Covers high-detail images of
#: current OpenAI and Anthropic models (Claude caps an image near 1,600 tokens, OpenAI's
#: patch-based models near 2,500, tiled ones at 1,105).
IMAGE_TOKENS_ALLOWANCE = 6_000
#: Tokens reserved when tools are declared: the providers wrap tool definitions in a
#: hidden system prompt (Anthropic documents about 350 tokens, more for built-in tools).
TOOLS_TOKENS_ALLOWANCE = 1_500
#: Tokens reserved for input the body only points at (a file id, a PDF, a previous
#: response, a conversation, a server-side search): unbounded by the bytes we see, so
#: the bound falls back to the model's context window when genai-prices knows it.
FILE_TOKENS_ALLOWANCE = 1_000_000
#: Chat framing per call (role markers, reply priming): the JSON syntax around each
#: message is already longer in bytes than the framing tokens, this is a margin.
_FRAMING_TOKENS = 64


class BodyProblem(msgspec.Struct, frozen=True):
    """A request body field of a type the router cannot read: the agent gets a 400."""

    #: The field, as the APIs name it in errors (`messages[0].content`).
    param: str
    message: str


_AT = re.compile(r"^(?P<detail>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def body_problem(exc: msgspec.ValidationError) -> BodyProblem:
    """msgspec's "Expected `array`, got `int` - at `$.messages`" as a named param."""
    match = _AT.match(str(exc))
    detail = match.group("detail") if match else str(exc)
    param = ((match.group("path") if match else None) or "").lstrip(".") or "body"
    detail = detail[:1].lower() + detail[1:]
    return BodyProblem(param, f"ironrt router: invalid type for '{param}': {detail}")


@functools.lru_cache(maxsize=64)
def _encoded_base(base: str) -> str:
    """A configured base URL in the encoded form the upstream client gets verbatim."""
    return str(yarl.URL(base))


def join_url(base: str, path: str) -> str:
    """Upstream URL for a router path (`/v1/...`, query string included) on `base`."""
    base = base.rstrip("/")
    if base.endswith("/v1") and (path == "/v1" or path.startswith(("/v1/", "/v1?"))):
        path = path[3:]
    return base + path


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup; `name` must be lower case.

    ASGI servers hand header names over in lower case, so the direct lookup hits; the
    scan is for callers holding a mapping with original casing.
    """
    value = headers.get(name)
    if value is not None:
        return value
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


def int_value(value: Any) -> int:
    """A usage number from provider JSON: ints as they are, anything else as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def dict_value(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def str_setter(container: Any, key: Any, on_change: Callable[[], None]) -> Callable[[str], None]:
    """A setter writing text into `container[key]` (dict key or list index)."""

    def setter(text: str) -> None:
        container[key] = text
        on_change()

    return setter


def json_string_slots(
    value: Any,
    channel: tuple[Hashable, ...],
    where: str,
    on_change: Callable[[], None],
    out: list[TextSlot],
) -> None:
    """Every string inside a decoded JSON value (tool input), as slots writing in place.

    Exposing the leaves instead of a JSON text keeps the value valid JSON whatever a
    policy writes (a placeholder with a quote in it cannot break the structure).
    """
    stack: list[tuple[Any, tuple[Hashable, ...]]] = [(value, channel)]
    while stack:
        node, path = stack.pop()
        items: Any = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(item, str):
                out.append(TextSlot((*path, key), item, str_setter(node, key, on_change), where))
            elif isinstance(item, dict | list):
                stack.append((item, (*path, key)))


def content_slots(
    container: dict[str, Any],
    key: str,
    channel: tuple[Hashable, ...],
    where: str,
    on_change: Callable[[], None],
    out: list[TextSlot],
    text_types: tuple[str, ...] = ("text",),
) -> None:
    """Slots for `container[key]` when it is a string or a list of typed text parts.

    Both APIs let message content be a plain string or a list of parts such as
    `{"type": "text", "text": ...}`; parts of other types (images, files) have no text.
    """
    value = container.get(key)
    if isinstance(value, str):
        out.append(TextSlot(channel, value, str_setter(container, key, on_change), where))
    elif isinstance(value, list):
        for j, part in enumerate(value):
            if isinstance(part, dict) and part.get("type") in text_types:
                text = part.get("text")
                if isinstance(text, str):
                    setter = str_setter(part, "text", on_change)
                    out.append(TextSlot((*channel, j), text, setter, where))


def noop() -> None:
    """An `on_change` for slots of bodies nobody needs to be told about."""
    return None


def event_setter(ev: StreamEvent, container: Any, key: Any) -> Callable[[str], None]:
    """A slot setter for text inside a stream event: writes it and marks the event."""

    def setter(text: str) -> None:
        container[key] = text
        ev.changed = True

    return setter


class ProviderAdapter(ABC):
    """One provider's API shape. Subclasses are stateless singletons."""

    name: ClassVar[str]
    #: Environment variables holding the real key, in order of preference.
    key_env: ClassVar[tuple[str, ...]]
    base_url_env: ClassVar[str]
    default_base_url: ClassVar[str]
    #: genai-prices provider id used for pricing and model lookups.
    price_provider: ClassVar[str]
    #: Request headers that carry the agent's credential: the router removes them before
    #: forwarding (then adds `upstream_auth_headers`), so the IC_TOKEN never leaves.
    auth_headers: ClassVar[tuple[str, ...]] = ("authorization", "x-api-key", "api-key")

    # ---- routing and auth -------------------------------------------------------------

    def upstream_url(self, path: str, base: str | None = None) -> str:
        """Where to send `path` (query string included); `base` overrides the default.

        The result is already encoded: `path` is the router's canonical path
        (`ironrt.router.paths`) and goes upstream exactly as it is.
        """
        return join_url(_encoded_base(base or self.default_base_url), path)

    @abstractmethod
    def endpoint_for(self, method: str, path: str) -> Endpoint | None:
        """The metered endpoint of a request; `"unmetered"` for other `/v1/` paths."""

    @abstractmethod
    def token_from_headers(self, headers: Mapping[str, str]) -> str | None:
        """The credential the agent sent (its IC_TOKEN), if any."""

    @abstractmethod
    def upstream_auth_headers(self, key: str, key_env: str | None = None) -> dict[str, str]:
        """Headers carrying the real key; `key_env` is the variable it came from."""

    # ---- errors -----------------------------------------------------------------------

    @abstractmethod
    def error_body(
        self, status: int, message: str, type: str, code: str | None, param: str | None = None
    ) -> bytes:
        """A JSON error body shaped like the provider's own, for an HTTP `status`."""

    @abstractmethod
    def stream_error_event(self, message: str, type: str) -> bytes:
        """An SSE event that makes the SDK raise: the stream failed after it started."""

    # ---- request shape ----------------------------------------------------------------

    #: Per endpoint, a msgspec type describing the fields of a request body that the
    #: router and the policies walk (lists they iterate, objects they look into). A body
    #: that does not fit is answered 400 before anything reads it; fields the code only
    #: tests with `isinstance` need no entry.
    request_shapes: ClassVar[Mapping[str, type[msgspec.Struct]]] = {}

    def request_problem(self, endpoint: Endpoint, body: dict[str, Any]) -> BodyProblem | None:
        """What in `body` has a type the router cannot read, if anything.

        Checked once, where the body is decoded: the rest of the adapter (and every
        policy) may then take the checked fields' types for granted.
        """
        shape = self.request_shapes.get(endpoint)
        if shape is None:
            return None
        try:
            msgspec.convert(body, shape)
        except msgspec.ValidationError as exc:
            return body_problem(exc)
        return None

    def request_model(self, endpoint: Endpoint, body: Any) -> str:
        model = dict_value(body).get("model")
        return model if isinstance(model, str) else ""

    def is_stream(self, endpoint: Endpoint, body: Any) -> bool:
        return endpoint in ("chat.completions", "responses", "messages") and (
            dict_value(body).get("stream") is True
        )

    def ensure_stream_usage(self, endpoint: Endpoint, body: dict[str, Any]) -> bool:
        """Make a stream report usage; True if the request was changed to do so.

        When True, the router must drop the extra usage-only chunk (`is_usage_only_chunk`)
        instead of forwarding it, so the agent sees the stream it asked for.
        """
        return False

    def is_usage_only_chunk(self, endpoint: Endpoint, ev: StreamEvent) -> bool:
        return False

    def closes_answer(self, endpoint: Endpoint, ev: StreamEvent) -> bool:
        """The event that ends a streamed answer. The router holds it back until the call's
        cost is durable, so an agent never sees the end of an answer a crash could lose."""
        return False

    @abstractmethod
    def max_output_tokens(self, endpoint: Endpoint, body: Any) -> int | None:
        """The request's cap on output tokens per choice, if it sets one."""

    @abstractmethod
    def set_max_output_tokens(self, endpoint: Endpoint, body: dict[str, Any], n: int) -> None:
        """Set the cap on output tokens (the budget clamps it when little remains)."""

    def choices(self, endpoint: Endpoint, body: Any) -> int:
        """How many completions one call produces (the output bound multiplies by it)."""
        return 1

    def input_token_bound(self, endpoint: Endpoint, body: Any, raw_len: int) -> int:
        """A safe UPPER bound of the call's input tokens, for budget reservation.

        Text: every token of a byte-level BPE tokenizer covers at least one byte of UTF-8
        text, and JSON encoding never shrinks text, so the body's length in bytes
        (`raw_len`, measured after any policy rewrote it) bounds the tokens of all text in
        it, message framing included (the JSON around a message is longer than its
        framing tokens). What bytes do not bound gets allowances: images
        (`IMAGE_TOKENS_ALLOWANCE` each), declared tools (`TOOLS_TOKENS_ALLOWANCE`), input
        the body only points at (`FILE_TOKENS_ALLOWANCE`). No input can exceed the
        model's context window, so the bound is capped by it when genai-prices knows it.
        """
        images, tools, external = self._input_extras(endpoint, dict_value(body))
        text_bound = max(raw_len, 1) + _FRAMING_TOKENS
        bound = text_bound + images * IMAGE_TOKENS_ALLOWANCE
        bound += TOOLS_TOKENS_ALLOWANCE if tools else 0
        bound += FILE_TOKENS_ALLOWANCE if external else 0
        window = context_window(self.price_provider, self.request_model(endpoint, body))
        # The window caps the allowances only: the bytes bound holds whatever the window.
        return max(text_bound, min(bound, window)) if window else bound

    def _input_extras(self, endpoint: Endpoint, body: dict[str, Any]) -> tuple[int, bool, bool]:
        """(number of images, tools declared, input referenced but not included)."""
        return 0, False, False

    # ---- exact input counts -----------------------------------------------------------

    def count_request(
        self, endpoint: Endpoint, body: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        """The (path, JSON body) to send to this provider's count endpoint for the input of
        a call to `endpoint`, or None when it cannot be counted (embeddings, models, count
        endpoints themselves, input the count endpoint cannot see such as server-tool
        results).

        The budget asks for it only at the margin, when the byte bound of
        `input_token_bound` would refuse or clamp a call the exact count may let through.
        `body` is not modified; the returned body shares no mutable state the caller
        cares about (it is sent, never forwarded).
        """
        return None

    def count_margin(self, endpoint: Endpoint, body: dict[str, Any]) -> int:
        """Tokens to add to the count so it stays an UPPER bound of what the call is billed
        for (formatting the translation to the count endpoint's format can lose)."""
        return 0

    def count_from_response(self, body: Any) -> int | None:
        """The input tokens a count endpoint answered (`{"input_tokens": N}` for both
        providers), or None if the answer does not carry a count."""
        value = dict_value(body).get("input_tokens")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        return None

    # ---- usage ------------------------------------------------------------------------

    @abstractmethod
    def usage_from_response(self, endpoint: Endpoint, body: Any) -> TokenUsage | None:
        """Usage of a non-streamed response body (decoded JSON)."""

    @abstractmethod
    def usage_from_event(self, endpoint: Endpoint, ev: StreamEvent, acc: TokenUsage) -> bool:
        """Fold the usage an event reports into `acc`; True if it carried any."""

    def stream_model(self, endpoint: Endpoint, ev: StreamEvent) -> str | None:
        """The model the stream reports (the one actually used, for pricing)."""
        return None

    # ---- text access ------------------------------------------------------------------

    @abstractmethod
    def request_texts(
        self, endpoint: Endpoint, body: dict[str, Any], on_change: Callable[[], None]
    ) -> list[TextSlot]:
        """Every piece of text a request sends (prompts, system, tool results, input)."""

    def response_has_text(self, endpoint: Endpoint) -> bool:
        """Whether a non-streamed response of `endpoint` can hold text (`response_texts`);
        one that cannot is read for its `usage` and `model` alone."""
        return endpoint in ("chat.completions", "responses", "messages")

    @abstractmethod
    def response_texts(self, endpoint: Endpoint, body: Any) -> list[TextSlot]:
        """Every piece of text of a non-streamed response (completions, tool arguments)."""

    @abstractmethod
    def event_texts(self, endpoint: Endpoint, ev: StreamEvent) -> list[TextSlot]:
        """The text inside one stream event; setting a slot marks the event changed."""

    @abstractmethod
    def event_closes(self, endpoint: Endpoint, ev: StreamEvent) -> list[Hashable]:
        """Channel keys this event ends (see `channel_closed`): flush them before it."""

    @abstractmethod
    def text_event(
        self, endpoint: Endpoint, channel: Hashable, text: str, like: StreamEvent
    ) -> StreamEvent:
        """A new delta event carrying `text` on `channel`, ids copied from `like`.

        The event comes encoded (`raw` set, `changed=False`) so it goes out as is.
        """


def adapter_of(flow: Flow) -> ProviderAdapter:
    """The flow's provider adapter as the router knows it. The kernel sees only its
    `Surface`; every flow the router or library mode builds carries a `ProviderAdapter`."""
    adapter = flow.adapter
    assert isinstance(adapter, ProviderAdapter)
    return adapter
