"""One LLM call as the policy pipeline sees it.

The router builds a `Flow` per request, hands it to each policy's hooks in order, and
forwards, refuses or records according to what the policies left on it. Policies talk to
the router only through this object: they set `refusal` to refuse, mutate `body` (and set
`body_changed`) to rewrite the request, append to `events` to have events published, and
keep their own private per-call state in `metadata` under their name. Every decision that
crosses a module (the input bound, the upstream, the budget's claim and hold, the stop
request, the circuit and retry verdicts) is a typed field. Nothing here does I/O. A check
that only reports may be left for after the answer (`later`).

Text access is provider-neutral: a `TextSlot` is one piece of text inside a request body,
a response body or a stream event (a message's content, a content part, a tool-call's
arguments, a delta), with a `channel` naming the stream of text it belongs to, so a
policy that needs to see text across chunk boundaries (PII) can keep state per channel.
The provider adapters produce the slots; a policy never looks at a provider's JSON shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from ironrt.governance.agent import AgentGovernance
    from ironrt.governance.ledger.scope import Claim, Hold
    from ironrt.protocol.events import Event

log = logging.getLogger("ironrt.router")

Endpoint = Literal[
    "chat.completions",
    "responses",
    "embeddings",
    "models",
    "messages",
    "messages.count_tokens",
    "responses.input_tokens",
    "unmetered",
]


class Surface(Protocol):
    """What the kernel asks of a provider's API surface (`ironrt.providers` implements
    it): where the texts of a body or an event are, and how large an answer may be. The
    kernel never reads a provider's JSON shape itself."""

    @property
    def name(self) -> str: ...

    #: The provider's name in genai-prices (a registered provider may differ from it).
    @property
    def price_provider(self) -> str: ...

    def max_output_tokens(self, endpoint: Endpoint, body: Any) -> int | None: ...

    def set_max_output_tokens(self, endpoint: Endpoint, body: dict[str, Any], n: int) -> None: ...

    def choices(self, endpoint: Endpoint, body: Any) -> int: ...

    def request_texts(
        self, endpoint: Endpoint, body: dict[str, Any], on_change: Callable[[], None]
    ) -> list[TextSlot]: ...

    def response_texts(self, endpoint: Endpoint, body: Any) -> list[TextSlot]: ...

    def event_texts(self, endpoint: Endpoint, ev: StreamEvent) -> list[TextSlot]: ...

    def event_closes(self, endpoint: Endpoint, ev: StreamEvent) -> list[Hashable]: ...

    def text_event(
        self, endpoint: Endpoint, channel: Hashable, text: str, like: StreamEvent
    ) -> StreamEvent: ...


def channel_closed(key: Hashable, channel: Hashable) -> bool:
    """True if `key` (from `event_closes`) closes `channel` (equal, or a tuple prefix)."""
    if key == channel:
        return True
    if isinstance(key, tuple) and isinstance(channel, tuple):
        return len(key) < len(channel) and channel[: len(key)] == key
    return False


@dataclass(slots=True)
class TextSlot:
    """A piece of text a policy may read and replace in place."""

    channel: Hashable
    text: str
    setter: Callable[[str], None]
    #: Where the text sits, for events: "prompt", "system", "tool_result", "completion",
    #: "tool_arguments", "input".
    where: str = "prompt"

    def set(self, text: str) -> None:
        self.text = text
        self.setter(text)


@dataclass(slots=True)
class StreamEvent:
    """One server-sent event of a streamed response.

    `data` is the decoded JSON payload (or None for non-JSON payloads such as `[DONE]`);
    `raw` is the event exactly as received. A policy that changes `data` sets `changed`, and
    the router re-encodes the event; otherwise `raw` goes to the agent untouched.
    """

    raw: bytes
    event: str | None = None
    data: Any = None
    changed: bool = False


@dataclass(slots=True)
class Refusal:
    """A policy's decision not to forward (or not to finish) a call.

    The router turns it into the provider's own error shape, so the agent's SDK raises its
    normal exception. `retryable=False` adds `x-should-retry: false`, which the official
    SDKs obey, so a refusal does not come back as a burst of retries.
    """

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    policy: str = ""
    retryable: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    #: The request field at fault, if one is (OpenAI's errors name it as `param`).
    param: str | None = None


@dataclass(slots=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(slots=True)
class Attempt:
    """The outcome of one try at the upstream, before anything reached the agent.

    Exactly one of `status` (an HTTP answer arrived) and `failure` (no answer: "connect",
    "timeout", "protocol") is set. `retry_after` is the upstream's Retry-After in seconds.
    """

    number: int
    status: int | None = None
    failure: str | None = None
    retry_after: float | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 500 and self.status != 429


@dataclass(slots=True)
class CircuitVerdict:
    """The breaker's word on this call's upstream (set by the breaker policy, read by the
    retry policy and the router)."""

    #: The upstream's circuit name: `"<provider>:<base url>"`.
    name: str
    #: The circuit was (or went) open for this call: no (more) tries.
    open: bool = False


@dataclass(slots=True)
class RetryVerdict:
    """The retry policy's record of this call's tries (read by the router for its answer
    and its `x-should-retry`)."""

    attempts: int = 0
    #: The policy stopped retrying (tries or deadline exhausted, circuit open): the agent's
    #: SDK must not retry either.
    gave_up: bool = False
    reason: str = ""
    #: The delays asked for between tries, in seconds.
    delays: list[float] = field(default_factory=list)


@dataclass(slots=True)
class Flow:
    agent: AgentGovernance
    adapter: Surface
    endpoint: Endpoint
    body: dict[str, Any] | None
    #: The agent's request headers (lower-case names), as received.
    headers: Mapping[str, str] = field(default_factory=dict)
    model: str = ""
    stream: bool = False
    body_changed: bool = False
    refusal: Refusal | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The events the policies want published once the call settles (BudgetClamped,
    #: PiiAlert, RateLimited, ...); the bus stamps their id, time and agent.
    events: list[Event] = field(default_factory=list)
    usage: TokenUsage | None = None
    status_code: int = 0
    error: str | None = None
    #: What the call is charged; None when it cannot be known (an unpriced model, allowed
    #: because none of the agent's scopes has a budget): the trace says so, no spend moves.
    cost_usd: float | None = 0.0
    #: The model has no known price and the call was let through unmetered (no budget in
    #: any of its scopes): it holds nothing and is recorded with an unknown cost.
    unpriced: bool = False
    started: float = field(default_factory=time.monotonic)
    ttfb: float | None = None
    #: Seconds spent waiting on the upstream (every try: from sending the request to its
    #: headers, and reading its body or stream): the rest of the latency is the router's.
    upstream_s: float = 0.0
    #: True once the first byte of the response went to the agent: from then on nothing may
    #: be retried and a refusal can only end the stream.
    committed: bool = False
    #: The router's upper bound of the input tokens (from the body's bytes; an exact
    #: provider count may replace it at the budget margin).
    input_bound: int = 0
    #: The request body's size in bytes as received (0: not known). Its texts have at most
    #: as many characters, so a check can size its work before it reads them.
    body_size: int = 0
    #: The same of a whole (not streamed) reply body, as the upstream sent it (0: not known).
    reply_size: int = 0
    #: What the call asks of the budget ledger (set by the budget policy), and the hold it
    #: was granted (set at admission, released exactly once at settlement).
    claim: Claim | None = None
    hold: Hold | None = None
    #: The model the provider says answered (the request's `model` stays in `model`).
    response_model: str = ""
    #: The HTTP status the provider answered with (None: no answer, or never asked).
    upstream_status: int | None = None
    #: The output cap the provider was told (the request's own, or the budget's clamp):
    #: reported output above it is not believed.
    output_cap: int | None = None
    #: No answer from the upstream: "connect" (never sent: free), "timeout" or "protocol"
    #: (sent, maybe billed).
    upstream_failure: str | None = None
    #: Settled (priced, books closed, recorded): done before the agent sees the end of
    #: its answer, at most once.
    settled: bool = False
    #: A budget was truly exhausted and the agent runs with `--on-budget stop`.
    stop_agent: bool = False
    #: Which upstream the call goes to, `"<provider>:<base url>"` (the breaker's circuit).
    upstream: str = ""
    #: The breaker's verdict (None: no breaker looked at this call).
    circuit: CircuitVerdict | None = None
    #: The retry policy's record (None: no retry policy ran).
    retry: RetryVerdict | None = None
    #: The first policy that raised in any hook: the call fails closed (see pipeline.py).
    failed_policy: str | None = None
    #: The completion's texts as the provider sent them (before the response policies),
    #: collected by the relay only when message content is captured for telemetry
    #: (`RouterConfig.capture_completions`); None otherwise.
    output_texts: list[str] | None = None
    #: Work a policy left for after the answer, because nothing the call sends or answers
    #: depends on it (a PII scan that only detects): `(policy, work)`, run once by
    #: `run_afterwards`.
    afterwards: list[tuple[str, Callable[[], object]]] | None = None

    @property
    def provider(self) -> str:
        return self.adapter.name

    @property
    def price_provider(self) -> str:
        """Who prices the call: genai-prices' name for the provider."""
        return self.adapter.price_provider

    def refuse(self, refusal: Refusal) -> None:
        if self.refusal is None:
            self.refusal = refusal

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def later(self, policy: str, work: Callable[[], object]) -> None:
        """Have `work` done once the agent has its answer instead of before the request
        leaves.

        For a check whose outcome changes nothing that is sent or answered (it only counts
        and reports): the request went out and the answer comes back whatever it finds,
        so neither waits for it. The router does it right after the answer's last byte
        (`RouterApp`, through `RouterService.after_answer`, which publishes what it
        reported), on every way a call ends: answered, refused, failed."""
        if self.afterwards is None:
            self.afterwards = [(policy, work)]
        else:
            self.afterwards.append((policy, work))

    def run_afterwards(self) -> None:
        """Do the work `later` was given, once. The answer is out: a raise cannot fail the
        call any more (it is logged, and what the check would have reported is lost), and
        must not stop the work of another policy."""
        work = self.afterwards
        if work is None:
            return
        self.afterwards = None
        for policy, do in work:
            try:
                do()
            except Exception:
                log.exception(
                    "policy %s failed on a check it left for after the answer (agent %s): "
                    "what it found is not reported",
                    policy,
                    self.agent.agent_id,
                )

    # Text access, delegated to the provider adapter so policies stay shape-agnostic.
    def request_texts(self) -> list[TextSlot]:
        if self.body is None:
            return []
        return self.adapter.request_texts(self.endpoint, self.body, self._mark_changed)

    def response_texts(self, body: Any) -> list[TextSlot]:
        return self.adapter.response_texts(self.endpoint, body)

    def event_texts(self, event: StreamEvent) -> list[TextSlot]:
        return self.adapter.event_texts(self.endpoint, event)

    def event_closes(self, event: StreamEvent) -> list[Hashable]:
        return self.adapter.event_closes(self.endpoint, event)

    def text_event(self, channel: Hashable, text: str, like: StreamEvent) -> StreamEvent:
        return self.adapter.text_event(self.endpoint, channel, text, like)

    def _mark_changed(self) -> None:
        self.body_changed = True
