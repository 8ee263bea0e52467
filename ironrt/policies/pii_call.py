"""What the PII checks know and tell of one call: its state, its streamed channels, its
counts and the `PiiAlert` that reports them (`pii_checks.py` does the checking).

Imported with the checks, at the policy's first call: the stream scanner brings the
detectors, whose patterns are compiled at import.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass, field

from ironrt.governance.flow import Flow, StreamEvent, TextSlot
from ironrt.pii import Placeholders, StreamRestorer, StreamScanner
from ironrt.pii.finding import Counts, Finding, count_findings
from ironrt.pii.redact import NovelPlaceholders
from ironrt.pii.stream import StreamRedactor
from ironrt.policies.pii_rules import PiiPlan
from ironrt.protocol.events import PiiAlert, PiiBlocked, PiiFinding

__all__ = [
    "REPEAT",
    "Channel",
    "PiiCallState",
    "add_counts",
    "close_channel",
    "hide",
    "is_json_text",
    "json_of",
    "open_channel",
    "report",
    "tally",
    "text_size",
]

#: Slots carrying text a stream already delivered in deltas (see providers/base.py).
REPEAT = "repeat"
#: Slots whose text may be a JSON document rather than prose.
JSON_WHERE = ("tool_arguments", "tool_result", REPEAT)
#: Stream text is only counted, never rewritten, so it is scanned in batches of this many
#: characters rather than on every one-token delta.
SCAN_BATCH = 128


@dataclass(slots=True)
class Channel:
    where: str
    #: The last event that carried this channel's text: the template for a flushed tail.
    like: StreamEvent
    scanner: StreamScanner = field(default_factory=lambda: StreamScanner(batch=SCAN_BATCH))
    restorer: StreamRestorer | None = None
    redactor: StreamRedactor | None = None
    #: Whether the channel's text is JSON, decided by its first non-blank text.
    json_text: bool | None = None


@dataclass(slots=True, init=False)
class PiiCallState:
    """What the policy knows about one call.

    Built for every call of an agent with PII checks, most of which only detect: what
    only redaction needs (the placeholders) is made at its first use, and whether the
    call redacts, read on every text, is kept as a field."""

    plan: PiiPlan
    #: Whether this call redacts any type (`plan.redacting`).
    redacting: bool
    #: (type, where) -> findings, in the request and in the response.
    request: dict[tuple[str, str], int]
    response: dict[tuple[str, str], int]
    channels: dict[Hashable, Channel]
    reported: bool
    #: The reply is counted after the answer (`Flow.later`): `complete`, at the
    #: settlement before it, leaves the response's report to that count.
    counting_later: bool
    #: Placeholders for findings the model produced (redact mode), sparing the agent's own.
    novel: NovelPlaceholders | None
    #: Whether each streamed channel's text was read as JSON, kept after the channel
    #: closes: its repeats (channel + `"full"`) are read the same way.
    json_streams: dict[Hashable, bool]
    #: A detecting call's streamed texts, kept per channel (its `where`, its pieces) to
    #: be counted once the agent has its answer; None once they outgrew the inline size
    #: and went to the channels' scanners (`pii_checks.PiiChecks.stream_event_async`).
    collected: dict[Hashable, tuple[str, list[str]]] | None
    collected_size: int
    _placeholders: Placeholders | None

    def __init__(self, plan: PiiPlan) -> None:
        self.plan = plan
        self.redacting = plan.redacting
        self.request = {}
        self.response = {}
        self.channels = {}
        self.reported = False
        self.counting_later = False
        self.novel = None
        self.json_streams = {}
        self.collected = {}
        self.collected_size = 0
        self._placeholders = None

    @property
    def placeholders(self) -> Placeholders:
        """The agent's values behind this call's placeholders, made at the first use."""
        placeholders = self._placeholders
        if placeholders is None:
            placeholders = self._placeholders = Placeholders()
        return placeholders

    def to_redact(self, findings: list[Finding]) -> list[Finding]:
        """The findings of types this call redacts (the others are only counted)."""
        redact = self.plan.redact
        if len(redact) == len(self.plan.actions):
            return findings
        return [f for f in findings if f.type in redact]

    def novel_placeholders(self) -> NovelPlaceholders:
        if self.novel is None:
            self.novel = NovelPlaceholders(self.placeholders)
        return self.novel


def is_json_text(slot: TextSlot, text: str) -> bool:
    """Whether the slot's text is itself JSON (tool-call arguments or a tool's result).

    In JSON text escapes separate words when scanning, values restored into it are escaped
    (a private key's newlines) and values taken from it are unescaped, so one placeholder
    maps to one value whatever the context and the JSON stays valid.
    """
    if slot.where not in JSON_WHERE:
        return False
    m = FIRST_VISIBLE.match(text)  # `text.lstrip()` would copy a large text
    return m is not None and m.group(1) in ("{", "[")


def json_of(state: PiiCallState, slot: TextSlot) -> bool:
    """Whether to read the slot as JSON; a repeat as its deltas were read, when they came
    (a message's text may start with `[`, a truncated call's arguments not parse)."""
    if slot.where == REPEAT and isinstance(slot.channel, tuple) and slot.channel:
        streamed = state.json_streams.get(slot.channel[:-1])
        if streamed is not None:
            return streamed
    return is_json_text(slot, slot.text)


#: The first character that is not whitespace (`\s` is `str.isspace`, as `lstrip` uses).
FIRST_VISIBLE = re.compile(r"\s*(\S)")


def tally(counts: dict[tuple[str, str], int], findings: list[Finding], where: str) -> None:
    """Count `findings` by (type, where). A plain dict: a `Counter` made per call (two a
    call, found or not) cost more than all the counting."""
    if findings:
        add_counts(counts, count_findings(findings), where)


def add_counts(counts: dict[tuple[str, str], int], found: Counts, where: str) -> None:
    """`tally` for findings already counted by type (`count_pii`)."""
    for type_, n in found:
        key = (type_, where)
        counts[key] = counts.get(key, 0) + n


def hide(
    state: PiiCallState, stretch: str, findings: list[Finding], where: str, json_text: bool
) -> str | None:
    """Count a stretch of the request's findings; the stretch with those of the types
    this call redacts replaced by placeholders, or None when it hides nothing."""
    if not findings:
        return None
    tally(state.request, findings, where)
    hidden = state.to_redact(findings) if state.redacting else ()
    return state.placeholders.redact(stretch, hidden, json_text=json_text) if hidden else None


def text_size(slots: list[TextSlot]) -> int:
    return sum(len(slot.text) for slot in slots)


def open_channel(state: PiiCallState, slot: TextSlot, event: StreamEvent) -> Channel:
    """The slot's channel, opened at its first text; `event` is the latest like it."""
    ch = state.channels.get(slot.channel)
    if ch is None:
        scanner = StreamScanner(batch=SCAN_BATCH, rules=state.plan.rules)
        ch = state.channels[slot.channel] = Channel(slot.where, event, scanner)
    ch.like = event
    if state.redacting and ch.restorer is None:
        ch.restorer = StreamRestorer(state.placeholders)
        ch.redactor = StreamRedactor(state.novel_placeholders(), state.plan.redact_rules)
    if ch.json_text is None and slot.text.strip():
        ch.json_text = ch.scanner.json_text = is_json_text(slot, slot.text)
        state.json_streams[slot.channel] = ch.json_text
        if ch.restorer is not None and ch.redactor is not None:
            ch.restorer.json_escape = ch.redactor.json_text = ch.json_text
    return ch


def close_channel(state: PiiCallState, channel: Hashable) -> str:
    """Forget a channel; return the text it still held (to be sent before the close)."""
    ch = state.channels.pop(channel)
    _, findings = ch.scanner.flush()
    tally(state.response, findings, ch.where)
    if ch.restorer is None or ch.redactor is None:
        return ""
    return ch.redactor.feed(ch.restorer.flush()) + ch.redactor.flush()


def report(
    flow: Flow,
    state: PiiCallState,
    counts: dict[tuple[str, str], int],
    direction: str,
    *,
    blocked: bool = False,
) -> None:
    """One `PiiAlert` per direction: `actions` says what was done per type, `action`
    the strongest of them (a response's findings are redacted or detected, never
    blocked: the provider already answered)."""
    total = sum(counts.values())
    if not total:
        return
    flow.agent.pii_findings += total
    per_type: dict[str, int] = {}
    for (type_, _), n in counts.items():
        per_type[type_] = per_type.get(type_, 0) + n
    done = {"block": "blocked", "redact": "redacted", "detect": "detected"}
    actions: dict[str, str] = {}
    for type_ in per_type:
        act = state.plan.actions.get(type_, "detect")
        if act == "block" and not blocked:
            act = "detect"  # a reply is not refused; nor, short of a block, a request
        actions[type_] = done[act]
    order = ("detected", "redacted", "blocked")
    action = max(actions.values(), key=order.index)
    flow.emit(
        PiiAlert(
            direction=direction,
            action=action,
            actions=dict(sorted(actions.items())),
            count=total,
            types=sorted(per_type),
            where=sorted({w for _, w in counts}),
            counts=dict(sorted(per_type.items())),
            findings=[PiiFinding(type=t, where=w, count=n) for (t, w), n in sorted(counts.items())],
        )
    )
    if blocked:
        stopped = sorted(t for t, act in actions.items() if act == "blocked")
        flow.emit(
            PiiBlocked(
                direction=direction,
                types=stopped,
                counts={t: per_type[t] for t in stopped},
            )
        )
