"""The retry loop, over any transport: after each try the policies decide whether and when
to try again (the retry policy asks for a delay, the breaker counts the outcome).

Nothing has reached the agent yet, so retrying is safe; an answer is committed (returned)
as soon as a try is not retried. A policy that raises in `upstream_attempt` fails the call
closed (`PolicyFailed` propagates): the answer is released, and the flow says whether the
provider answered (a 2xx may be billed) or not.
"""

from __future__ import annotations

import time

import anyio

from ironrt.governance.flow import Attempt, Flow
from ironrt.governance.pipeline import Pipeline, PolicyFailed
from ironrt.transports.base import Answer, AttemptFailed, Outgoing, Transport


class Unreachable(Exception):
    """No HTTP answer at all (connect error, timeout, protocol error), retries exhausted."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


async def send_with_retries(
    transport: Transport, flow: Flow, pipeline: Pipeline, request: Outgoing
) -> Answer:
    number = 0
    while True:
        number += 1
        began = time.monotonic()
        try:
            answer = await transport.attempt(flow, request)
        except AttemptFailed as exc:
            attempt = Attempt(number, failure=exc.kind, elapsed=time.monotonic() - began)
            flow.upstream_s += attempt.elapsed
            try:
                delay = pipeline.upstream_attempt(flow, attempt)
            except PolicyFailed:
                flow.upstream_failure = exc.kind  # charged as a request without an answer
                raise
            if delay is None:
                raise Unreachable(exc.kind, str(exc)) from None
            await _back_off(flow, delay)
            continue
        attempt = Attempt(
            number,
            status=answer.status,
            retry_after=answer.retry_after,
            elapsed=time.monotonic() - began,
        )
        flow.upstream_s += attempt.elapsed
        try:
            delay = pipeline.upstream_attempt(flow, attempt)
        except PolicyFailed:
            flow.upstream_status = answer.status  # answered: a 2xx may be billed
            await answer.aclose()
            raise
        if delay is None:
            return answer
        await answer.aclose()
        await _back_off(flow, delay)


async def _back_off(flow: Flow, delay: float) -> None:
    """The wait between two tries counts as the upstream's time, not the router's."""
    began = time.monotonic()
    await anyio.sleep(delay)
    flow.upstream_s += time.monotonic() - began
