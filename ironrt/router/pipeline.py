"""Runs the ordered policies over a flow, failing closed.

A policy that raises never lets a call through unchecked: during `request` it becomes a
refusal (provider-shaped 500 naming the policy); during a response or stream it ends the
call with an error. `complete` hooks always all run, each isolated, since they release
what earlier hooks reserved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ironrt.policies.base import Policy
from ironrt.router.flow import Attempt, Flow, Refusal, StreamEvent

log = logging.getLogger("ironrt.router")


class PolicyFailed(Exception):
    def __init__(self, policy: str, exc: BaseException) -> None:
        super().__init__(f"policy '{policy}' failed: {type(exc).__name__}")
        self.policy = policy


class Pipeline:
    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = list(policies)
        # Only policies that override a hook are called for it: the hot path stays short.
        self._request = self._overriding("request", "request_async")
        self._attempt = self._overriding("upstream_attempt")
        self._response = self._overriding("response", "response_async")
        self._event = self._overriding("stream_event", "stream_event_async")
        self._end = self._overriding("stream_end")
        self._complete = self._overriding("complete")
        self._stream = [p for p in self.policies if p in self._event or p in self._end]

    def _overriding(self, *hooks: str) -> list[Policy]:
        return [
            p
            for p in self.policies
            if any(getattr(type(p), hook) is not getattr(Policy, hook) for hook in hooks)
        ]

    def get(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)

    async def request(self, flow: Flow) -> None:
        for policy in self._request:
            try:
                await policy.request_async(flow)
            except Exception as exc:
                log.exception("policy %s failed on request", policy.name)
                flow.refuse(
                    Refusal(
                        500,
                        f"ironrt policy '{policy.name}' failed ({type(exc).__name__}); "
                        "the call was not forwarded",
                        type="api_error",
                        code="policy_error",
                        policy=policy.name,
                    )
                )
            if flow.refusal is not None:
                return

    def upstream_attempt(self, flow: Flow, attempt: Attempt) -> float | None:
        delay: float | None = None
        for policy in self._attempt:
            try:
                wanted = policy.upstream_attempt(flow, attempt)
            except Exception:
                log.exception("policy %s failed on upstream_attempt", policy.name)
                return None  # no retry: fewer upstream calls is the safe side
            if wanted is not None:
                delay = wanted if delay is None else max(delay, wanted)
        return delay

    async def response(self, flow: Flow, body: object) -> bool:
        changed = False
        for policy in self._response:
            try:
                changed = await policy.response_async(flow, body) or changed
            except Exception as exc:
                log.exception("policy %s failed on response", policy.name)
                raise PolicyFailed(policy.name, exc) from exc
        return changed

    async def stream_event(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        events = [event]
        for policy in self._event:
            out: list[StreamEvent] = []
            try:
                for ev in events:
                    out.extend(await policy.stream_event_async(flow, ev))
            except Exception as exc:
                log.exception("policy %s failed on stream_event", policy.name)
                raise PolicyFailed(policy.name, exc) from exc
            events = out
        return events

    def stream_end(self, flow: Flow) -> list[StreamEvent]:
        """Flush what policies hold back; what an earlier policy flushes passes the later ones."""
        pending: list[StreamEvent] = []
        for policy in self._stream:
            try:
                passed: list[StreamEvent] = []
                for ev in pending:
                    passed.extend(policy.stream_event(flow, ev))
                passed.extend(policy.stream_end(flow))
            except Exception as exc:
                log.exception("policy %s failed on stream_end", policy.name)
                raise PolicyFailed(policy.name, exc) from exc
            pending = passed
        return pending

    def complete(self, flow: Flow) -> None:
        for policy in self._complete:
            try:
                policy.complete(flow)
            except Exception:
                log.exception("policy %s failed on complete", policy.name)
