"""What the router and the policies need to know about one provider's HTTP API.

The router is provider-neutral: it asks a `ProviderAdapter` which endpoint a request is,
where the agent's token sits and how the real key goes upstream, how the provider shapes
its errors, where usage is reported (in a body or in stream events), and where text sits
in requests, responses and stream events (as `TextSlot`s, so policies never look at a
provider's JSON). Adapters are stateless and do no I/O; one instance serves every call.

An adapter is two things put together: the provider's registry entry (its name, key and
base-URL variables, auth scheme, error shape, path prefix: `ironrt.providers.registry`)
and its API family's table of surfaces, one per endpoint (`ironrt.providers.surfaces`).
Every per-endpoint question is a lookup in that table and a call on the surface found.

Conventions every adapter follows (the router and policies rely on them):

- Upstream URL = base URL (no trailing slash) + the path the agent requested (which starts
  with `/v1/` once the provider's router prefix, such as `/acme`, is removed). If the base
  itself ends in `/v1` (the SDKs' own `base_url` convention, e.g.
  `IRONRT_OPENAI_BASE_URL=http://127.0.0.1:9000/v1`) that `/v1` is not repeated. So both
  `http://127.0.0.1:PORT` and `http://127.0.0.1:PORT/v1` work, and so does a gateway
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
  not count it twice. Its channel is the deltas' channel with one more element
  (`"full"`), so a policy can read the repeat as it read the deltas (JSON or prose).
- JSON a model writes in a reply (tool-call arguments, a tool's input) is one slot of
  JSON text, streamed or not (`where="tool_arguments"`; Anthropic's decoded `input`
  object is encoded for it, `json_text_slot`), so a policy gives the agent the same
  value both ways, and a value restored into it lands decoded, never as its escapes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Hashable, ItemsView, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import msgspec

from ironrt.governance.flow import (
    Endpoint,
    Flow,
    StreamEvent,
    TextSlot,
    TokenUsage,
    channel_closed,
)
from ironrt.governance.pricing import context_window
from ironrt.providers import shapes
from ironrt.providers.surfaces.base import ApiSurface
from ironrt.providers.texts import (
    content_slots,
    dict_value,
    event_setter,
    int_value,
    json_string_slots,
    noop,
    str_setter,
)
from ironrt.settings_table import ProviderEntry

__all__ = [
    "FILE_TOKENS_ALLOWANCE",
    "IMAGE_TOKENS_ALLOWANCE",
    "TOOLS_TOKENS_ALLOWANCE",
    "BodyProblem",
    "ProviderAdapter",
    "adapter_of",
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
#: The surface of a path no surface serves (unmetered): no text, no usage, no answer.
_NO_SURFACE = ApiSurface()


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
    import yarl  # only for a configured base URL, once each: off the start (~17 ms)

    return str(yarl.URL(base))


def join_url(base: str, path: str) -> str:
    """Upstream URL for a router path (`/v1/...`, query string included) on `base`."""
    base = base.rstrip("/")
    if base.endswith("/v1") and (path == "/v1" or path.startswith(("/v1/", "/v1?"))):
        path = path[3:]
    return base + path


class LowerHeaders(Mapping[str, str]):
    """Request headers whose names are all lower case (the router's): a header missing
    from it is missing, with no scan for another casing.

    Kept as the bytes that came in and decoded when read: a call reads three or four of
    an SDK's eighteen (its token, the provider hints), and decoding all of them into a
    dict was ~15 opcodes a header. A name given twice is the last one's, as in a dict."""

    __slots__ = ("_index", "_text")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._index: dict[bytes, bytes] = dict(raw)
        self._text: dict[str, str] | None = None

    def get(self, name: str, default: Any = None) -> Any:
        value = self._index.get(name.encode("latin-1"))
        return default if value is None else value.decode("latin-1")

    def __getitem__(self, name: str) -> str:
        value = self._index.get(name.encode("latin-1"))
        if value is None:
            raise KeyError(name)
        return value.decode("latin-1")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.encode("latin-1") in self._index

    def _all(self) -> dict[str, str]:
        text = self._text
        if text is None:
            text = self._text = {
                k.decode("latin-1"): v.decode("latin-1") for k, v in self._index.items()
            }
        return text

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> ItemsView[str, str]:
        return self._all().items()

    def __repr__(self) -> str:
        return f"LowerHeaders({self._all()!r})"


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup; `name` must be lower case.

    ASGI servers hand header names over in lower case, so the direct lookup hits; the
    scan is for callers holding a mapping with original casing (not `LowerHeaders`: the
    router asks for absent headers on every call, which a scan made ~1 µs each).
    """
    value = headers.get(name)
    if value is not None or type(headers) is LowerHeaders:
        return value
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


class ProviderAdapter:
    """One provider: its entry, and its family's surfaces. A family is a subclass that
    fills `posts`, `surfaces` and `default_entry` (`OpenAIAdapter`, `AnthropicAdapter`);
    each provider of the family is an instance made from its entry."""

    #: POST paths of the family's metered endpoints (after the provider's path prefix);
    #: `GET /v1/models[/{id}]` is `models` in every family.
    posts: ClassVar[Mapping[str, Endpoint]] = {}
    #: The family's surface of each endpoint; an endpoint without one has no text, usage
    #: or offline answer.
    surfaces: ClassVar[Mapping[str, ApiSurface]] = {}
    #: What an adapter made with no entry describes: the family's built-in provider.
    default_entry: ClassVar[ProviderEntry]
    #: Request headers that carry the agent's credential: the router removes them before
    #: forwarding (then adds `upstream_auth_headers`), so the IC_TOKEN never leaves.
    auth_headers: ClassVar[tuple[str, ...]] = ("authorization", "x-api-key", "api-key")

    def __init__(self, entry: ProviderEntry | None = None) -> None:
        self.entry = entry = entry or self.default_entry
        self.name = entry.name
        #: Environment variables holding the real key, in order of preference.
        self.key_env = entry.key_env
        self.base_url_env = entry.base_url_env
        self.default_base_url = entry.base_url
        #: genai-prices provider id used for pricing and model lookups.
        self.price_provider = entry.price_provider

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def surface(self, endpoint: Endpoint) -> ApiSurface:
        return self.surfaces.get(endpoint, _NO_SURFACE)

    # ---- routing and auth -------------------------------------------------------------

    def local_path(self, path: str) -> str:
        """`path` as the provider serves it: the router prefix (`/acme`) removed."""
        prefix = self.entry.path_prefix
        if prefix and (path == prefix or path.startswith((prefix + "/", prefix + "?"))):
            return path[len(prefix) :] or "/"
        return path

    def upstream_url(self, path: str, base: str | None = None) -> str:
        """Where to send `path` (query string included); `base` overrides the default.

        The result is already encoded: `path` is the router's canonical path
        (`ironrt.router.paths`) and goes upstream exactly as it is, its prefix removed.
        """
        return join_url(_encoded_base(base or self.default_base_url), self.local_path(path))

    def endpoint_for(self, method: str, path: str) -> Endpoint | None:
        """The metered endpoint of a request; `"unmetered"` for other `/v1/` paths."""
        path = self.local_path(path.split("?", 1)[0].rstrip("/"))
        if path != "/v1" and not path.startswith("/v1/"):
            return None
        method = method.upper()
        if method == "POST":
            return self.posts.get(path, "unmetered")
        if method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
            return "models"
        return "unmetered"

    def token_from_headers(self, headers: Mapping[str, str]) -> str | None:
        """The credential the agent sent (its IC_TOKEN), if any."""
        return shapes.token_from_headers(self.entry, headers)

    def upstream_auth_headers(self, key: str, key_env: str | None = None) -> dict[str, str]:
        """Headers carrying the real key; `key_env` is the variable it came from."""
        return shapes.upstream_auth_headers(self.entry, key, key_env)

    # ---- errors -----------------------------------------------------------------------

    def error_body(
        self, status: int, message: str, type: str, code: str | None, param: str | None = None
    ) -> bytes:
        """A JSON error body shaped like the provider's own, for an HTTP `status`."""
        return shapes.error_body(self.entry, status, message, type, code, param)

    def stream_error_event(self, message: str, type: str, code: str | None = None) -> bytes:
        """An SSE event that makes the SDK raise: the stream failed after it started."""
        return shapes.stream_error_event(self.entry, message, type, code)

    # ---- request shape ----------------------------------------------------------------

    def request_problem(self, endpoint: Endpoint, body: dict[str, Any]) -> BodyProblem | None:
        """What in `body` has a type the router cannot read (the surface's `shape`), if
        anything. Checked once, where the body is decoded: the rest of the adapter (and
        every policy) may then take the checked fields' types for granted."""
        shape = self.surface(endpoint).shape
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
        return self.surface(endpoint).streams and dict_value(body).get("stream") is True

    def ensure_stream_usage(self, endpoint: Endpoint, body: dict[str, Any]) -> bool:
        """Make a stream report usage; True if the request was changed to do so.

        When True, the router must drop the extra usage-only chunk (`is_usage_only_chunk`)
        instead of forwarding it, so the agent sees the stream it asked for.
        """
        return self.surface(endpoint).ensure_stream_usage(body)

    def is_usage_only_chunk(self, endpoint: Endpoint, ev: StreamEvent) -> bool:
        return self.surface(endpoint).is_usage_only_chunk(ev)

    def closes_answer(self, endpoint: Endpoint, ev: StreamEvent) -> bool:
        """The event that ends a streamed answer. The router holds it back until the call's
        cost is durable, so an agent never sees the end of an answer a crash could lose."""
        return self.surface(endpoint).closes_answer(ev)

    def max_output_tokens(self, endpoint: Endpoint, body: Any) -> int | None:
        """The request's cap on output tokens per choice, if it sets one."""
        return self.surface(endpoint).max_output_tokens(body)

    def set_max_output_tokens(self, endpoint: Endpoint, body: dict[str, Any], n: int) -> None:
        """Set the cap on output tokens (the budget clamps it when little remains)."""
        self.surface(endpoint).set_max_output_tokens(body, n)

    def choices(self, endpoint: Endpoint, body: Any) -> int:
        """How many completions one call produces (the output bound multiplies by it)."""
        return self.surface(endpoint).choices(body)

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
        images, tools, external = self.surface(endpoint).input_extras(dict_value(body))
        text_bound = max(raw_len, 1) + _FRAMING_TOKENS
        bound = text_bound + images * IMAGE_TOKENS_ALLOWANCE
        bound += TOOLS_TOKENS_ALLOWANCE if tools else 0
        bound += FILE_TOKENS_ALLOWANCE if external else 0
        window = context_window(self.price_provider, self.request_model(endpoint, body))
        # The window caps the allowances only: the bytes bound holds whatever the window.
        return max(text_bound, min(bound, window)) if window else bound

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
        return self.surface(endpoint).count_request(body)

    def count_margin(self, endpoint: Endpoint, body: dict[str, Any]) -> int:
        """Tokens to add to the count so it stays an UPPER bound of what the call is billed
        for (formatting the translation to the count endpoint's format can lose)."""
        return self.surface(endpoint).count_margin(body)

    def count_from_response(self, body: Any) -> int | None:
        """The input tokens a count endpoint answered (`{"input_tokens": N}` for both
        families), or None if the answer does not carry a count."""
        value = dict_value(body).get("input_tokens")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        return None

    # ---- usage ------------------------------------------------------------------------

    def usage_from_response(self, endpoint: Endpoint, body: Any) -> TokenUsage | None:
        """Usage of a non-streamed response body (decoded JSON)."""
        return self.surface(endpoint).usage_from_response(body)

    def usage_from_event(self, endpoint: Endpoint, ev: StreamEvent, acc: TokenUsage) -> bool:
        """Fold the usage an event reports into `acc`; True if it carried any."""
        return self.surface(endpoint).usage_from_event(ev, acc)

    def stream_model(self, endpoint: Endpoint, ev: StreamEvent) -> str | None:
        """The model the stream reports (the one actually used, for pricing)."""
        return self.surface(endpoint).stream_model(ev)

    # ---- text access ------------------------------------------------------------------

    def request_texts(
        self, endpoint: Endpoint, body: dict[str, Any], on_change: Callable[[], None]
    ) -> list[TextSlot]:
        """Every piece of text a request sends (prompts, system, tool results, input)."""
        return self.surface(endpoint).request_texts(body, on_change)

    def response_has_text(self, endpoint: Endpoint) -> bool:
        """Whether a non-streamed response of `endpoint` can hold text (`response_texts`);
        one that cannot is read for its `usage` and `model` alone."""
        return self.surface(endpoint).has_text

    def response_texts(self, endpoint: Endpoint, body: Any) -> list[TextSlot]:
        """Every piece of text of a non-streamed response (completions, tool arguments)."""
        return self.surface(endpoint).response_texts(body)

    def event_texts(self, endpoint: Endpoint, ev: StreamEvent) -> list[TextSlot]:
        """The text inside one stream event; setting a slot marks the event changed."""
        return self.surface(endpoint).event_texts(ev)

    def event_closes(self, endpoint: Endpoint, ev: StreamEvent) -> list[Hashable]:
        """Channel keys this event ends (see `channel_closed`): flush them before it."""
        return self.surface(endpoint).event_closes(ev)

    def text_event(
        self, endpoint: Endpoint, channel: Hashable, text: str, like: StreamEvent
    ) -> StreamEvent:
        """A new delta event carrying `text` on `channel`, ids copied from `like`.

        The event comes encoded (`raw` set, `changed=False`) so it goes out as is.
        """
        return self.surface(endpoint).text_event(channel, text, like)


def adapter_of(flow: Flow) -> ProviderAdapter:
    """The flow's provider adapter as the router knows it. The kernel sees only its
    `Surface`; every flow the router or library mode builds carries a `ProviderAdapter`."""
    adapter = flow.adapter
    assert isinstance(adapter, ProviderAdapter)
    return adapter
