"""The checks of the PII policy: detection, redaction and blocking over a call's text.

What they do, and why large texts are checked in steps, is told in `policies/pii.py`,
whose `PiiPolicy` imports this module at its first call (the detectors it brings compile
their patterns at import: not on the daemon's start path).
"""

from __future__ import annotations

import time
from typing import TypeVar

import anyio

from ironrt.governance.flow import Flow, Refusal, StreamEvent, TextSlot, channel_closed
from ironrt.pii import StreamRestorer
from ironrt.pii.detectors import count_pii, find_pii
from ironrt.pii.redact import NovelPlaceholders
from ironrt.pii.steps import PIECE_START, STEP_S, TURN_S, Pace, Steps, Turns, drain, find_steps
from ironrt.policies.pii import PiiPace
from ironrt.policies.pii_call import (
    REPEAT,
    PiiCallState,
    add_counts,
    close_channel,
    hide,
    is_json_text,
    json_of,
    open_channel,
    report,
    tally,
    text_size,
)
from ironrt.policies.pii_rules import PiiPlan, RulesFiles, plan_for

__all__ = ["PiiCallState", "PiiChecks"]

T = TypeVar("T")

#: Where an agent's large-check lock lives in `AgentGovernance.state`.
_AGENT_LOCK = "pii"


class PiiChecks:
    """What `PiiPolicy` does, built at its first call; the router awaits the `*_async`
    hooks, the plain ones check everything inline."""

    name = "pii"

    def __init__(self, pace: PiiPace | None = None, rules: RulesFiles | None = None) -> None:
        """`pace`: `PiiPolicy`'s (its defaults: the daemon's, `ironrt/pii/steps.py`)."""
        pace = pace or PiiPace()
        self.rules = rules
        self.inline_max = pace.inline_max
        self.step_s = STEP_S if pace.step_s is None else pace.step_s
        self.piece = PIECE_START if pace.piece is None else pace.piece
        self._turns = Turns(TURN_S if pace.turn_s is None else pace.turn_s)

    async def _run(self, flow: Flow, size: int, steps: Steps[T]) -> T:
        if size <= self.inline_max:
            return drain(steps)
        lock = flow.agent.state.get(_AGENT_LOCK)
        if not isinstance(lock, anyio.Lock):
            lock = flow.agent.state[_AGENT_LOCK] = anyio.Lock()
        return await self._turns.run(lock, steps)

    def _pace(self, size: int) -> Pace:
        return Pace.whole() if size <= self.inline_max else Pace(self.step_s, self.piece)

    # ---- request ------------------------------------------------------------------------

    def plan(self, flow: Flow) -> PiiPlan:
        """What this call does with each type (read once per call, at its start)."""
        gov = flow.agent
        if self.rules is None:
            return plan_for(gov)
        return plan_for(gov, self.rules.rules_for(gov.pii_file))

    def request(self, flow: Flow) -> None:
        plan = self.plan(flow)
        if not plan.off:
            self._request_inline(flow, plan, flow.request_texts())

    async def request_async(self, flow: Flow) -> None:
        plan = self.plan(flow)
        if plan.off:
            return
        # Only detecting, with texts that fit the inline scan: nothing sent or answered
        # depends on it, so the texts are scanned once the agent has its answer
        # (`Flow.later`). A body of known size needs not even be read for them before
        # the request leaves: its texts have no more characters than it has bytes.
        detect_only = not (plan.block or plan.redact)
        if detect_only and 0 < flow.body_size <= self.inline_max:
            self._request_later(flow, plan, None)
            return
        slots = flow.request_texts()
        size = text_size(slots)
        if size > self.inline_max:
            await self._run(flow, size, self._request_steps(flow, plan, slots, self._pace(size)))
        elif detect_only:
            self._request_later(flow, plan, slots)
        else:
            self._request_inline(flow, plan, slots)

    def _request_later(self, flow: Flow, plan: PiiPlan, slots: list[TextSlot] | None) -> None:
        """Scan the prompt after the answer; `slots` None: read them then."""
        state = flow.metadata["pii"] = PiiCallState(plan)

        def scan() -> None:
            self._request_scan(flow, plan, flow.request_texts() if slots is None else slots, state)

        flow.later(self.name, scan)

    def _request_inline(self, flow: Flow, plan: PiiPlan, slots: list[TextSlot]) -> None:
        """`_request_steps` for texts checked at once: each text is one `find_pii` (one
        `count_pii` where nothing is redacted), with no steps, pace or generator around it
        (the common call: a short prompt)."""
        state = flow.metadata["pii"] = PiiCallState(plan)
        self._request_scan(flow, plan, slots, state)

    def _request_scan(
        self, flow: Flow, plan: PiiPlan, slots: list[TextSlot], state: PiiCallState
    ) -> None:
        rewritten: list[tuple[TextSlot, str]] = []
        redacting = state.redacting
        for slot in slots:
            json_text = is_json_text(slot, slot.text)
            if not redacting:  # detect and block read the types found, nothing more
                counts = count_pii(slot.text, json_text=json_text, rules=plan.rules)
                if counts:
                    add_counts(state.request, counts, slot.where)
                continue
            findings = find_pii(slot.text, json_text=json_text, rules=plan.rules)
            hidden = hide(state, slot.text, findings, slot.where, json_text)
            if hidden is not None:
                rewritten.append((slot, hidden))
        self._request_verdict(flow, plan, state, rewritten)

    def _request_steps(
        self, flow: Flow, plan: PiiPlan, slots: list[TextSlot], pace: Pace
    ) -> Steps[None]:
        state = PiiCallState(plan)
        flow.metadata["pii"] = state
        # Placeholders are issued slot by slot, finding by finding, as the text is scanned:
        # the numbering inline redaction of the whole text gives.
        rewritten: list[tuple[TextSlot, str]] = []
        for slot in slots:
            json_text = is_json_text(slot, slot.text)
            parts: list[str] = []
            found = False
            for stretch, findings in find_steps(
                slot.text, pace, json_text=json_text, rules=plan.rules
            ):
                hidden = hide(state, stretch, findings, slot.where, json_text)
                found = found or hidden is not None
                parts.append(stretch if hidden is None else hidden)
                yield
            if found:
                rewritten.append((slot, "".join(parts)))
        self._request_verdict(flow, plan, state, rewritten)

    def _request_verdict(
        self,
        flow: Flow,
        plan: PiiPlan,
        state: PiiCallState,
        rewritten: list[tuple[TextSlot, str]],
    ) -> None:
        """Block, or put the redacted texts in place, and report what the request held."""
        if not state.request:
            return
        blocked = sorted({t for t, _ in state.request if t in plan.block})
        if blocked:
            types = ", ".join(blocked)
            flow.refuse(Refusal(
                status=400,
                message=(
                    f"ironrt blocked this request: it contains PII ({types}) that this "
                    "agent's PII policy blocks. Remove the data, or redact that type instead "
                    "(`--pii redact`, `--pii-types`; `pii=\"redact\"` in `ironrt.protect`)."
                ),
                type="invalid_request_error",
                code="pii_blocked",
                policy=self.name,
                retryable=False,
            ))  # fmt: skip
            report(flow, state, state.request, "request", blocked=True)
            return
        for slot, text in rewritten:
            slot.set(text)
        report(flow, state, state.request, "request")

    # ---- non-streamed response ----------------------------------------------------------

    def response(self, flow: Flow, body: object) -> bool:
        state = flow.metadata.get("pii")
        if not isinstance(state, PiiCallState):
            return False
        slots = flow.response_texts(body)
        if not state.redacting:
            return self._count_inline(flow, state, slots)
        return drain(self._response_steps(flow, state, slots, Pace.whole()))

    async def response_async(self, flow: Flow, body: object) -> bool:
        state = flow.metadata.get("pii")
        if not isinstance(state, PiiCallState):
            return False
        # Only counting, with texts that fit the inline count: the reply goes to the agent
        # as it is, so it is counted once the agent has it (`Flow.later`), as a detected
        # prompt is; a body of known size is not read for its texts before either.
        if not state.redacting and 0 < flow.reply_size <= self.inline_max:
            self._count_later(flow, state, body, None)
            return False
        slots = flow.response_texts(body)
        size = text_size(slots)
        if size <= self.inline_max and not state.redacting:
            self._count_later(flow, state, body, slots)
            return False
        return await self._run(
            flow, size, self._response_steps(flow, state, slots, self._pace(size))
        )

    def _count_later(
        self, flow: Flow, state: PiiCallState, body: object, slots: list[TextSlot] | None
    ) -> None:
        """Count the reply after the answer; `slots` None: read them then."""
        state.counting_later = True

        def count() -> None:
            self._count_inline(flow, state, flow.response_texts(body) if slots is None else slots)

        flow.later(self.name, count)

    def _count_inline(self, flow: Flow, state: PiiCallState, slots: list[TextSlot]) -> bool:
        """`_response_steps` of a call that only detects, checked at once: each text is
        one `count_pii`; nothing is rewritten (False: the body is unchanged)."""
        rules = state.plan.rules
        for slot in slots:
            if slot.where != REPEAT:
                json_text = is_json_text(slot, slot.text)
                counts = count_pii(slot.text, json_text=json_text, rules=rules)
                if counts:
                    add_counts(state.response, counts, slot.where)
        self._finish(flow, state)
        return False

    def _response_steps(
        self, flow: Flow, state: PiiCallState, slots: list[TextSlot], pace: Pace
    ) -> Steps[bool]:
        changed = False
        for slot in slots:
            if slot.where != REPEAT:
                json_text = is_json_text(slot, slot.text)
                for _, findings in find_steps(
                    slot.text, pace, json_text=json_text, rules=state.plan.rules
                ):
                    tally(state.response, findings, slot.where)
                    yield
            if state.redacting and (yield from self._rewrite_whole(state, slot, pace)):
                changed = True
        self._finish(flow, state)
        return changed

    # ---- stream ---------------------------------------------------------------------------

    def stream_event(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        state = flow.metadata.get("pii")
        if not isinstance(state, PiiCallState):
            return [event]
        slots = flow.event_texts(event)
        if not state.redacting:
            return self._event_inline(flow, state, event, slots)
        return drain(self._event_steps(flow, state, event, slots, Pace.whole()))

    async def stream_event_async(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        """Events are small; one can still be huge (a `.done` event repeating a whole text).

        A call that only detects keeps its stream's texts and counts them once the agent
        has its answer (`_collect`), as it does a whole reply: nothing it finds changes
        what is sent. A stream whose texts outgrow the inline size is scanned as it comes."""
        state = flow.metadata.get("pii")
        if not isinstance(state, PiiCallState):
            return [event]
        slots = flow.event_texts(event)
        size = text_size(slots)
        collecting = not state.redacting and state.collected is not None
        if collecting and (not slots or self._collect(flow, state, event, slots, size)):
            return [event]
        if size <= self.inline_max and not state.redacting:
            return self._event_inline(flow, state, event, slots)
        return await self._run(
            flow, size, self._event_steps(flow, state, event, slots, self._pace(size))
        )

    def _collect(
        self,
        flow: Flow,
        state: PiiCallState,
        event: StreamEvent,
        slots: list[TextSlot],
        size: int,
    ) -> bool:
        """Keep a detecting call's event texts for `_count_collected`; False once they
        would outgrow the inline size: what was kept goes to the channels' scanners (their
        findings are the same for any split of a text) and the stream is scanned as it
        comes from this event on."""
        collected = state.collected
        assert collected is not None
        total = state.collected_size + size
        if total > self.inline_max:
            state.collected = None
            state.counting_later = False
            for channel, (where, pieces) in collected.items():
                kept = TextSlot(channel, "".join(pieces), _never_set, where)
                ch = open_channel(state, kept, event)
                tally(state.response, ch.scanner.feed(kept.text)[1], where)
            return False
        if not state.counting_later:
            state.counting_later = True
            flow.later(self.name, lambda: self._count_collected(flow, state))
        state.collected_size = total
        for slot in slots:
            if slot.where != REPEAT:
                kept_pieces = collected.get(slot.channel)
                if kept_pieces is None:
                    collected[slot.channel] = (slot.where, [slot.text])
                else:
                    kept_pieces[1].append(slot.text)
        return True

    def _count_collected(self, flow: Flow, state: PiiCallState) -> None:
        """Count what `_collect` kept, each channel's text whole, and report."""
        collected = state.collected
        if collected is None:  # outgrown: the scanners counted it
            return
        state.collected = None
        rules = state.plan.rules
        for channel, (where, pieces) in collected.items():
            text = pieces[0] if len(pieces) == 1 else "".join(pieces)
            json_text = is_json_text(TextSlot(channel, text, _never_set, where), text)
            counts = count_pii(text, json_text=json_text, rules=rules)
            if counts:
                add_counts(state.response, counts, where)
        self._finish(flow, state)

    def _event_inline(
        self, flow: Flow, state: PiiCallState, event: StreamEvent, slots: list[TextSlot]
    ) -> list[StreamEvent]:
        """`_event_steps` of a call that only detects, for an event checked at once: each
        text is fed whole to its channel's scanner and counted; nothing is rewritten or
        held back, so the event goes on as it came (the common stream: ~17 small events a
        call, 14 -> 6 µs each)."""
        closes = flow.event_closes(event)
        for slot in slots:
            if slot.where == REPEAT:
                continue
            ch = open_channel(state, slot, event)
            _, findings = ch.scanner.feed(slot.text)
            if findings:
                tally(state.response, findings, ch.where)
            if closes and any(channel_closed(key, slot.channel) for key in closes):
                close_channel(state, slot.channel)
        for key in closes:  # a detecting call's channels hold nothing back to send
            for channel in [c for c in state.channels if channel_closed(key, c)]:
                close_channel(state, channel)
        return [event]

    def _event_steps(
        self,
        flow: Flow,
        state: PiiCallState,
        event: StreamEvent,
        slots: list[TextSlot],
        pace: Pace,
    ) -> Steps[list[StreamEvent]]:
        closes = flow.event_closes(event)
        for slot in slots:
            if slot.where == REPEAT:
                if state.redacting:
                    yield from self._rewrite_whole(state, slot, pace)
                continue
            closing = any(channel_closed(key, slot.channel) for key in closes)
            yield from self._stream_slot(state, slot, event, closing, pace)
        before: list[StreamEvent] = []
        for key in closes:
            for channel in [c for c in state.channels if channel_closed(key, c)]:
                like = state.channels[channel].like
                rest = close_channel(state, channel)
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
            rest = close_channel(state, channel)
            if rest:
                out.append(flow.text_event(channel, rest, like))
        if not state.counting_later:  # else the count after the answer reports
            self._finish(flow, state)
        return out

    def complete(self, flow: Flow) -> None:
        state = flow.metadata.get("pii")
        if isinstance(state, PiiCallState) and not state.reported and not state.counting_later:
            for channel in list(state.channels):  # the stream broke off: count what it had
                close_channel(state, channel)
            self._finish(flow, state)

    # ---- helpers ------------------------------------------------------------------------

    def _stream_slot(
        self, state: PiiCallState, slot: TextSlot, event: StreamEvent, closing: bool, pace: Pace
    ) -> Steps[None]:
        """Feed the slot's text to its channel, in pieces if it is large.

        The scanner, restorer and redactor give the same text for any split of what they
        are fed, so the pieces change nothing; a text of one piece takes the calls it
        always took.
        """
        ch = open_channel(state, slot, event)
        text, out, pos = slot.text, list[str](), 0
        while True:
            size = pace.size
            piece = text if pos == 0 and len(text) <= size else text[pos : pos + size]
            pos += len(piece)
            last = pos >= len(text)
            t0 = time.perf_counter()
            _, findings = ch.scanner.feed(piece)
            tally(state.response, findings, ch.where)
            if ch.restorer is not None and ch.redactor is not None:
                done = ch.restorer.feed(piece)
                if last and closing:
                    done += ch.restorer.flush()
                done = ch.redactor.feed(done)
                if last and closing:
                    done += ch.redactor.flush()
                out.append(done)
            pace.took(len(piece), time.perf_counter() - t0)
            if last:
                break
            yield
        if state.redacting:
            rewritten = out[0] if len(out) == 1 else "".join(out)
            if rewritten != slot.text:
                slot.set(rewritten)
        if closing:
            close_channel(state, slot.channel)

    @staticmethod
    def _rewrite_whole(state: PiiCallState, slot: TextSlot, pace: Pace) -> Steps[bool]:
        """Restore the agent's values, then hide what the model produced itself."""
        json_text = json_of(state, slot)
        text = slot.text
        if len(text) <= pace.size:
            text = state.placeholders.restore(text, json_escape=json_text)
        else:  # the restorer gives the same text for any split of it
            restorer = StreamRestorer(state.placeholders, json_escape=json_text)
            size = pace.size
            parts: list[str] = []
            for pos in range(0, len(text), size):
                parts.append(restorer.feed(text[pos : pos + size]))
                yield
            parts.append(restorer.flush())
            text = "".join(parts)
        novel: NovelPlaceholders | None = None
        parts = []
        rules = state.plan.redact_rules
        for stretch, findings in find_steps(text, pace, json_text=json_text, rules=rules):
            if findings:
                if novel is None:
                    novel = state.novel_placeholders()
                parts.append(novel.redact(stretch, findings, json_text=json_text))
            else:
                parts.append(stretch)
            yield
        text = parts[0] if len(parts) == 1 else "".join(parts)
        if text == slot.text:
            return False
        slot.set(text)
        return True

    def _finish(self, flow: Flow, state: PiiCallState) -> None:
        if not state.reported:
            state.reported = True
            report(flow, state, state.response, "response")


def _never_set(text: str) -> None:
    """The setter of a collected text's slot: a detecting call rewrites nothing."""
    raise AssertionError("a detecting call's streamed text is never rewritten")
