"""PII policy: detect, redact or block personal data and secrets in an agent's LLM traffic.

Modes (per agent, `flow.agent.pii`, read once per call so a change applies from the next
call on and never half-way through one):

- `off`: every hook returns at once.
- `detect` (default): findings in the request and in the response are counted on the agent
  and reported in `PiiAlert` events (types, where, counts: never a value). One event per
  direction and call: `direction` (request|response), `action` (detected|redacted|blocked),
  `count`, `types`, `where`, `counts` per type, `findings` per (type, where).
- `redact`: each finding in the request is replaced by a typed placeholder (`[EMAIL_1]`)
  before the request leaves the machine; placeholders the model echoes are turned back
  into the agent's values in the response, streamed or not. A finding the model produced
  itself (not one of the agent's own values) is replaced by a placeholder too before it
  reaches the agent: redact protects both directions.
- `block`: a request with findings is refused with a provider-shaped 400 naming the types
  (`x-should-retry: false`, so the SDK does not retry it).

Streams are handled per channel (a choice's content, a tool call's arguments): findings that
straddle events are caught by `StreamScanner`, placeholders split across events are
restored by `StreamRestorer`, each holding back only a bounded tail, flushed before the
event that closes its channel and at the end of the stream.

The policy sees text only through `Flow`; the per-call state sits in
`flow.metadata["pii"]` (a `PiiCallState`), so the router and tests can read what happened.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field

from ironrt.pii import Finding, Placeholders, StreamRestorer, StreamScanner, find_pii
from ironrt.pii.redact import NovelPlaceholders
from ironrt.pii.stream import StreamRedactor
from ironrt.policies.base import Policy
from ironrt.protocol import PiiMode
from ironrt.router.flow import Flow, Refusal, StreamEvent, TextSlot
from ironrt.router.providers.base import channel_closed

__all__ = ["PiiCallState", "PiiPolicy"]

#: Slots carrying text a stream already delivered in deltas (see providers/base.py).
_REPEAT = "repeat"
#: Slots whose text may be a JSON document rather than prose.
_JSON_WHERE = ("tool_arguments", "tool_result", _REPEAT)
#: Stream text is only counted, never rewritten, so it is scanned in batches of this many
#: characters rather than on every one-token delta.
_SCAN_BATCH = 128


@dataclass(slots=True)
class _Channel:
    where: str
    #: The last event that carried this channel's text: the template for a flushed tail.
    like: StreamEvent
    scanner: StreamScanner = field(default_factory=lambda: StreamScanner(batch=_SCAN_BATCH))
    restorer: StreamRestorer | None = None
    redactor: StreamRedactor | None = None
    #: Whether the channel's text is JSON, decided by its first non-blank text.
    json_text: bool | None = None


@dataclass(slots=True)
class PiiCallState:
    """What the policy knows about one call."""

    mode: PiiMode
    placeholders: Placeholders = field(default_factory=Placeholders)
    #: (type, where) -> findings, in the request and in the response.
    request: Counter[tuple[str, str]] = field(default_factory=Counter)
    response: Counter[tuple[str, str]] = field(default_factory=Counter)
    channels: dict[Hashable, _Channel] = field(default_factory=dict)
    reported: bool = False
    #: Placeholders for findings the model produced (redact mode), sparing the agent's own.
    novel: NovelPlaceholders | None = None

    @property
    def redacting(self) -> bool:
        return self.mode == "redact"

    def novel_placeholders(self) -> NovelPlaceholders:
        if self.novel is None:
            self.novel = NovelPlaceholders(self.placeholders)
        return self.novel


def _is_json_text(slot: TextSlot, text: str) -> bool:
    """Whether the slot's text is itself JSON (tool-call arguments or a tool's result).

    In JSON text escapes separate words when scanning, values restored into it are escaped
    (a private key's newlines) and values taken from it are unescaped, so one placeholder
    maps to one value whatever the context and the JSON stays valid.
    """
    return slot.where in _JSON_WHERE and text.lstrip()[:1] in ("{", "[")


class PiiPolicy(Policy):
    name = "pii"

    # ---- request ------------------------------------------------------------------------

    def request(self, flow: Flow) -> None:
        mode = flow.agent.pii
        if mode == "off":
            return
        state = PiiCallState(mode)
        flow.metadata["pii"] = state
        found: list[tuple[TextSlot, list[Finding]]] = []
        for slot in flow.request_texts():
            findings = find_pii(slot.text, json_text=_is_json_text(slot, slot.text))
            if findings:
                found.append((slot, findings))
                state.request.update((f.type, slot.where) for f in findings)
        if not found:
            return
        if mode == "block":
            types = ", ".join(sorted({t for t, _ in state.request}))
            flow.refuse(Refusal(
                status=400,
                message=(
                    f"ironrt blocked this request: it contains PII ({types}) and this agent's "
                    "PII mode is 'block'. Remove the data, or run the agent with --pii redact."
                ),
                type="invalid_request_error",
                code="pii_blocked",
                policy=self.name,
                retryable=False,
            ))  # fmt: skip
            self._report(flow, state.request, "request", "blocked")
            return
        if mode == "redact":
            for slot, findings in found:
                json_text = _is_json_text(slot, slot.text)
                slot.set(state.placeholders.redact(slot.text, findings, json_text=json_text))
        self._report(flow, state.request, "request", "redacted" if mode == "redact" else "detected")

    # ---- non-streamed response ----------------------------------------------------------

    def response(self, flow: Flow, body: object) -> bool:
        state = flow.metadata.get("pii")
        if not isinstance(state, PiiCallState):
            return False
        changed = False
        for slot in flow.response_texts(body):
            if slot.where != _REPEAT:
                found = find_pii(slot.text, json_text=_is_json_text(slot, slot.text))
                state.response.update((f.type, slot.where) for f in found)
            if state.redacting and self._rewrite_whole(state, slot):
                changed = True
        self._finish(flow, state)
        return changed

    # ---- stream ---------------------------------------------------------------------------

    def stream_event(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        state = flow.metadata.get("pii")
        if not isinstance(state, PiiCallState):
            return [event]
        closes = flow.event_closes(event)
        for slot in flow.event_texts(event):
            if slot.where == _REPEAT:
                if state.redacting:
                    self._rewrite_whole(state, slot)
                continue
            closing = any(channel_closed(key, slot.channel) for key in closes)
            self._stream_slot(state, slot, event, closing)
        before: list[StreamEvent] = []
        for key in closes:
            for channel in [c for c in state.channels if channel_closed(key, c)]:
                like = state.channels[channel].like
                rest = self._close(state, channel)
                if rest:
                    before.append(flow.text_event(channel, rest, like))
        return [*before, event] if before else [event]

    def stream_end(self, flow: Flow) -> list[StreamEvent]:
        state = flow.metadata.get("pii")
        if not isinstance(state, PiiCallState):
            return []
        out: list[StreamEvent] = []
        for channel in list(state.channels):
            like = state.channels[channel].like
            rest = self._close(state, channel)
            if rest:
                out.append(flow.text_event(channel, rest, like))
        self._finish(flow, state)
        return out

    def complete(self, flow: Flow) -> None:
        state = flow.metadata.get("pii")
        if isinstance(state, PiiCallState) and not state.reported:
            for channel in list(state.channels):  # the stream broke off: count what it had
                self._close(state, channel)
            self._finish(flow, state)

    # ---- helpers ------------------------------------------------------------------------

    def _stream_slot(
        self, state: PiiCallState, slot: TextSlot, event: StreamEvent, closing: bool
    ) -> None:
        ch = state.channels.get(slot.channel)
        if ch is None:
            ch = state.channels[slot.channel] = _Channel(slot.where, event)
        ch.like = event
        _, findings = ch.scanner.feed(slot.text)
        state.response.update((f.type, ch.where) for f in findings)
        if state.redacting:
            if ch.restorer is None:
                ch.restorer = StreamRestorer(state.placeholders)
                ch.redactor = StreamRedactor(state.novel_placeholders())
            assert ch.redactor is not None
            if ch.json_text is None and slot.text.strip():
                ch.json_text = ch.restorer.json_escape = _is_json_text(slot, slot.text)
            text = ch.restorer.feed(slot.text)
            if closing:
                text += ch.restorer.flush()
            text = ch.redactor.feed(text)
            if closing:
                text += ch.redactor.flush()
            if text != slot.text:
                slot.set(text)
        if closing:
            self._close(state, slot.channel)

    @staticmethod
    def _close(state: PiiCallState, channel: Hashable) -> str:
        """Forget a channel; return the text it still held (to be sent before the close)."""
        ch = state.channels.pop(channel)
        _, findings = ch.scanner.flush()
        state.response.update((f.type, ch.where) for f in findings)
        if ch.restorer is None or ch.redactor is None:
            return ""
        return ch.redactor.feed(ch.restorer.flush()) + ch.redactor.flush()

    @staticmethod
    def _rewrite_whole(state: PiiCallState, slot: TextSlot) -> bool:
        """Restore the agent's values, then hide what the model produced itself."""
        json_text = _is_json_text(slot, slot.text)
        text = state.placeholders.restore(slot.text, json_escape=json_text)
        novel = find_pii(text, json_text=json_text)
        if novel:
            text = state.novel_placeholders().redact(text, novel, json_text=json_text)
        if text == slot.text:
            return False
        slot.set(text)
        return True

    def _finish(self, flow: Flow, state: PiiCallState) -> None:
        if not state.reported:
            state.reported = True
            self._report(flow, state.response, "response", "detected")

    @staticmethod
    def _report(flow: Flow, counts: Counter[tuple[str, str]], direction: str, action: str) -> None:
        total = sum(counts.values())
        if not total:
            return
        flow.agent.pii_findings += total
        per_type: Counter[str] = Counter()
        for (type_, _), n in counts.items():
            per_type[type_] += n
        flow.emit(
            "PiiAlert",
            direction=direction,
            action=action,
            count=total,
            types=sorted(per_type),
            where=sorted({w for _, w in counts}),
            counts=dict(sorted(per_type.items())),
            findings=[{"type": t, "where": w, "count": n} for (t, w), n in sorted(counts.items())],
        )
