"""Runs the ordered policies over a flow, failing closed.

A policy that raises never lets a call through unchecked, whatever the hook:

- `request`: the call becomes a refusal (provider-shaped 500 `policy_error` naming the
  policy) and is never forwarded;
- `upstream_attempt`: `PolicyFailed` is raised out of the retry loop, the answer is
  withheld and the agent gets the same 500 (the call is charged as one that was sent);
- `response`, `stream_event`, `stream_end`: `PolicyFailed`, the answer is withheld, or the
  stream ends with the provider's error event;
- `complete`: every policy's `complete` still runs (each releases what it reserved), then
  `flow.failed_policy` names the one that raised, and the answer is withheld as above.

The first policy that failed is kept on `flow.failed_policy` for the trace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ironrt.governance.flow import Attempt, Flow, Refusal, StreamEvent
from ironrt.governance.policy import Policy

log = logging.getLogger("ironrt.router")


class PolicyFailed(Exception):
    def __init__(self, policy: str, exc: BaseException) -> None:
        super().__init__(f"policy '{policy}' failed: {type(exc).__name__}")
        self.policy = policy


def policy_error(policy: str, exc_name: str, hook: str) -> Refusal:
    """What the agent gets when a policy fails: a provider-shaped 500 naming it."""
    return Refusal(
        500,
        f"ironrt policy '{policy}' failed in {hook} ({exc_name}); the call was not completed",
        type="api_error",
        code="policy_error",
        policy=policy,
    )


def _failed(flow: Flow, policy: str) -> None:
    if flow.failed_policy is None:
        flow.failed_policy = policy


def _overrides(policy: Policy, hook: str) -> bool:
    """Whether the policy's class defines `hook` itself (not the base class's default)."""
    return getattr(type(policy), hook) is not getattr(Policy, hook)


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
        # A policy that keeps the default `*_async` hook is called synchronously: no
        # coroutine made and awaited per policy per call for a check that never suspends.
        self._request_awaits = [_overrides(p, "request_async") for p in self._request]
        self._response_awaits = [_overrides(p, "response_async") for p in self._response]
        self._event_awaits = [_overrides(p, "stream_event_async") for p in self._event]

    def _overriding(self, *hooks: str) -> list[Policy]:
        return [p for p in self.policies if any(_overrides(p, hook) for hook in hooks)]

    def get(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)

    async def request(self, flow: Flow) -> None:
        for policy, awaits in zip(self._request, self._request_awaits, strict=True):
            try:
                if awaits:
                    await policy.request_async(flow)
                else:
                    policy.request(flow)
            except Exception as exc:
                log.exception("policy %s failed on request", policy.name)
                _failed(flow, policy.name)
                flow.refuse(policy_error(policy.name, type(exc).__name__, "request"))
            if flow.refusal is not None:
                return

    def upstream_attempt(self, flow: Flow, attempt: Attempt) -> float | None:
        delay: float | None = None
        for policy in self._attempt:
            try:
                wanted = policy.upstream_attempt(flow, attempt)
            except Exception as exc:
                log.exception("policy %s failed on upstream_attempt", policy.name)
                _failed(flow, policy.name)
                raise PolicyFailed(policy.name, exc) from exc
            if wanted is not None:
                delay = wanted if delay is None else max(delay, wanted)
        return delay

    async def response(self, flow: Flow, body: object) -> bool:
        changed = False
        for policy, awaits in zip(self._response, self._response_awaits, strict=True):
            try:
                if awaits:
                    changed = await policy.response_async(flow, body) or changed
                else:
                    changed = policy.response(flow, body) or changed
            except Exception as exc:
                log.exception("policy %s failed on response", policy.name)
                _failed(flow, policy.name)
                raise PolicyFailed(policy.name, exc) from exc
        return changed

    async def stream_event(self, flow: Flow, event: StreamEvent) -> list[StreamEvent]:
        events = [event]
        for policy, awaits in zip(self._event, self._event_awaits, strict=True):
            out: list[StreamEvent] = []
            try:
                for ev in events:
                    if awaits:
                        out.extend(await policy.stream_event_async(flow, ev))
                    else:
                        out.extend(policy.stream_event(flow, ev))
            except Exception as exc:
                log.exception("policy %s failed on stream_event", policy.name)
                _failed(flow, policy.name)
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
                _failed(flow, policy.name)
                raise PolicyFailed(policy.name, exc) from exc
            pending = passed
        return pending

    def complete(self, flow: Flow) -> None:
        """Every `complete` runs, each isolated: each releases what its policy reserved."""
        for policy in self._complete:
            try:
                policy.complete(flow)
            except Exception:
                log.exception("policy %s failed on complete", policy.name)
                _failed(flow, policy.name)
