"""PII policy: detect, redact or block personal data and secrets in an agent's LLM traffic.

Actions, per type: the agent's `pii` mode, narrowed or mixed by its `pii_types`, made
stricter by its scopes' floors (`policies/pii_rules.py`: a `PiiPlan`, read once per call
so a change applies from the next call on and never half-way through one). Types the plan
does not act on are not even reported by the detectors, so they pass untouched:

- `off`: nothing acted on: every hook returns at once.
- `detect` (default): findings in the request and in the response are counted on the agent
  and reported in `PiiAlert` events (types, where, counts: never a value). One event per
  direction and call: `direction` (request|response), `action` (the strongest done:
  detected|redacted|blocked), `actions` per type, `count`, `types`, `where`, `counts` per
  type, `findings` per (type, where).
- `redact`: each finding in the request is replaced by a typed placeholder (`[EMAIL_1]`)
  before the request leaves the machine; placeholders the model echoes are turned back
  into the agent's values in the response, streamed or not. A finding the model produced
  itself (not one of the agent's own values) is replaced by a placeholder too before it
  reaches the agent: redact protects both directions.
- `block`: a request with findings of such a type is refused with a provider-shaped 400
  naming them (`x-should-retry: false`, so the SDK does not retry it).

Text that is JSON (tool-call arguments, streamed or not) is scanned with its escapes read as
separators and gets placeholders only where the JSON stays valid. A detector that raises
fails the call closed, as every hook does (`governance/pipeline.py`), with one exception:
the prompt and the whole (not streamed) reply of a call that only detects are scanned once
the agent has its answer (nothing sent or answered depends on them: `Flow.later`), so a
raise there is logged and the call stands, those findings unreported.

Streams are handled per channel (a choice's content, a tool call's arguments): findings that
straddle events are caught by `StreamScanner`, placeholders split across events are
restored by `StreamRestorer`, each holding back only a bounded tail, flushed before the
event that closes its channel and at the end of the stream.

The policy sees text only through `Flow`; the per-call state sits in
`flow.metadata["pii"]` (a `PiiCallState`), so the router and tests can read what happened.

Large texts. Scanning is pure Python around `re`, 0.2-0.6 µs a character on dense PII (up
to ~5 µs on crafted input): three 15 MiB prompts held the event loop, so every other
agent's calls and the control API, for ~10 s. The router awaits the `*_async` hooks: a
request, response or stream event with at most `INLINE_MAX` characters of text is checked
inline as before (about a millisecond at most); a larger one is checked in steps of about
`STEP_S` (`ironrt/pii/steps.py`), and the loop gets a turn whenever the large checks in
progress have used `TURN_S` between them (`Turns`). One large check per agent runs at a
time (its other calls wait their turn), so a flood from one agent costs the others one
share of the loop, not one per prompt. The results are the same as inline (same
findings, placeholders and order): where a step ends never changes what is found
(`PieceScan`, `StreamScanner`, `StreamRestorer`).

Why steps on the loop rather than a worker thread: the scan holds the GIL, so a thread
buys no parallelism, and the loop then waits for the GIL (up to the 5 ms switch interval)
at every wake-up and socket call. 3 x 4 MiB redacted through the daemon (`bench/stall.py
--quick`, a loaded 2-CPU machine), p50/p99 of another agent's call and of `/v1/health`:
with the scan in worker threads (at most 1 or 2, in the same short pieces) 24-36/100-150
ms and 16-17/63-88 ms; in steps on the loop 13/47 ms and 7/17 ms. A process pool would
scan in parallel, but ships 15 MiB out and ~10^5 findings back through pickle on the loop.

The checks themselves (`pii_checks.py`) are imported at the policy's first call, not when
the router is built: the detectors they bring compile their patterns at import, ~10% of
the daemon's start until its router answered. The daemon loads them in a worker thread
right after its router answers (`ironrt/pii/warm.py`), so the first call does not pay
for them either.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from ironrt.governance.flow import Flow, StreamEvent
from ironrt.governance.policy import Policy

if TYPE_CHECKING:
    from ironrt.pii.steps import Turns
    from ironrt.policies.pii_call import PiiCallState
    from ironrt.policies.pii_checks import PiiChecks
    from ironrt.policies.pii_rules import PiiPlan, RulesFiles

__all__ = ["INLINE_MAX", "PiiCallState", "PiiPace", "PiiPolicy"]

#: Characters of text (all slots of a request, response or stream event) checked inline,
#: on the path they always took: about 1 ms on dense PII, a few on a loaded machine. Above
#: it a check takes its agent's lock and gives the loop turns.
INLINE_MAX = 4096


class PiiPace(msgspec.Struct, frozen=True):
    """How large checks are paced (None: the daemon's pace, `ironrt/pii/steps.py`): at
    most `inline_max` characters are checked inline, larger texts in steps of `step_s`
    over pieces of `piece`, taking turns of `turn_s` between an agent's calls."""

    inline_max: int = INLINE_MAX
    turn_s: float | None = None
    step_s: float | None = None
    piece: int | None = None


class PiiPolicy(Policy):
    """The router awaits the `*_async` hooks; the plain ones check everything inline.

    Each hook hands the call to the checks (`PiiChecks`), built at the first one: an
    `*_async` hook returns their coroutine as it is (no extra frame on the hot path)."""

    name = "pii"

    def __init__(
        self,
        *,
        inline_max: int = INLINE_MAX,
        turn_s: float | None = None,
        step_s: float | None = None,
        piece: int | None = None,
        rules: RulesFiles | None = None,
    ) -> None:
        """The defaults are the daemon's (None: the pace of `ironrt/pii/steps.py`); tests
        force the stepped path with small pieces (`inline_max=0, step_s=0, piece=5`).
        `rules`: the home's and agents' `pii.toml` (None: the built-in detectors only)."""
        self.rules = rules
        self.pace = PiiPace(inline_max, turn_s, step_s, piece)
        self._checks: PiiChecks | None = None

    @property
    def checks(self) -> PiiChecks:
        checks = self._checks
        if checks is None:
            from ironrt.policies.pii_checks import PiiChecks

            checks = self._checks = PiiChecks(self.pace, self.rules)
        return checks

    @property
    def _turns(self) -> Turns:
        """The large checks in progress (tests watch them)."""
        return self.checks._turns

    def plan(self, flow: Flow) -> PiiPlan:
        """What this call does with each type (read once per call, at its start)."""
        return self.checks.plan(flow)

    def request(self, flow: Flow) -> None:
        self.checks.request(flow)

    def request_async(self, flow: Flow) -> Coroutine[Any, Any, None]:
        return self.checks.request_async(flow)

    def response(self, flow: Flow, body: object) -> bool:
        return self.checks.response(flow, body)

    def response_async(self, flow: Flow, body: object) -> Coroutine[Any, Any, bool]:
        return self.checks.response_async(flow, body)

    def stream_event(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        return self.checks.stream_event(flow, event)

    def stream_event_async(
        self, flow: Flow, event: StreamEvent
    ) -> Coroutine[Any, Any, list[StreamEvent]]:
        """Events are small; one can still be huge (a `.done` event repeating a whole text)."""
        return self.checks.stream_event_async(flow, event)

    def stream_end(self, flow: Flow) -> list[StreamEvent]:
        return self.checks.stream_end(flow)

    def complete(self, flow: Flow) -> None:
        self.checks.complete(flow)


def __getattr__(name: str) -> Any:
    """`PiiCallState` (what the checks know about a call, in `flow.metadata["pii"]`) comes
    with the checks, imported on first use."""
    if name == "PiiCallState":
        from ironrt.policies.pii_call import PiiCallState

        return PiiCallState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
