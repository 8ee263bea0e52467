"""The shape of a policy: a small object with hooks the router calls in order.

Hooks, in the order a call meets them (all optional, all synchronous, none does I/O):

- `request(flow)`: before forwarding. Inspect or rewrite `flow.body` (set
  `flow.body_changed`), or refuse with `flow.refuse(Refusal(...))`. The first refusal
  stops the pipeline; later policies' `request` hooks are not called, but every policy's
  `complete` hook still is (so a reservation made earlier is released).
- `upstream_attempt(flow, attempt) -> float | None`: after each try at the upstream, while
  nothing has reached the agent yet. Return a delay in seconds to ask for another try
  (the router takes the largest, within the call's deadline), or None. The circuit
  breaker counts outcomes here; the retry policy decides here.
- `response(flow, body)`: a non-streamed successful JSON response, decoded. May mutate it
  (return True if it did, so the router re-encodes it).
- `stream_event(flow, event) -> list[StreamEvent]`: each server-sent event in order. Return
  the events to send in its place: usually `[event]`; `[]` to hold it back; more to insert.
- `stream_end(flow) -> list[StreamEvent]`: the upstream stream ended; return what a policy
  still holds back, in order.
- `complete(flow)`: the call settled (success, upstream error, refusal, client gone);
  `flow.usage`, `flow.status_code` and `flow.error` are final. Never refuses.

The router awaits `request_async`, `response_async` and `stream_event_async`, which call
the hooks above unless a policy overrides them (the PII policy does: it checks a large
text in steps, letting the event loop run between them).

A hook that raises fails the call closed: the router answers a provider-shaped 500 that
names the policy, and never forwards a request a policy could not check. The one exception
is work a policy leaves for after the answer (`Flow.later`: a check that changes nothing
sent or answered, such as a PII scan that only detects a prompt or a whole reply): the
answer is out by then, so a raise there is logged and the call stands.
"""

from __future__ import annotations

from typing import ClassVar

from ironrt.governance.flow import Attempt, Flow, StreamEvent


class Policy:
    name: ClassVar[str] = "policy"

    def request(self, flow: Flow) -> None:
        return None

    def upstream_attempt(self, flow: Flow, attempt: Attempt) -> float | None:
        return None

    def response(self, flow: Flow, body: object) -> bool:
        return False

    def stream_event(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        return [event]

    def stream_end(self, flow: Flow) -> list[StreamEvent]:
        return []

    def complete(self, flow: Flow) -> None:
        return None

    # What the router awaits. A policy whose check of a large body takes long (PII)
    # overrides these to give the event loop turns meanwhile; by default, the hooks above.

    async def request_async(self, flow: Flow) -> None:
        self.request(flow)

    async def response_async(self, flow: Flow, body: object) -> bool:
        return self.response(flow, body)

    async def stream_event_async(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        return self.stream_event(flow, event)
