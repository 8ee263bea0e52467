"""Alert webhooks: chosen events POSTed as JSON to the URLs of `IRONRT_ALERT_WEBHOOKS`.

Each webhook gets `{"text": "<one line>", "event": {...}}` (`text` is what Slack and its
look-alikes show; `event` the event as `ironrt events --json` prints it) for the kinds it
asked for (by default budget warnings and exhaustion, PII blocks, opened circuits and
failed agents).

Never blocking: the bus drops events for a subscriber that falls behind, so the
subscriber here only sorts each event into the bounded queue of every webhook that wants
it and returns; a full queue drops the event (counted, logged once per episode). One
task per webhook delivers its queue in order, each alert retried with jittered
exponential backoff a bounded number of times within a bounded time, so a webhook that
hangs or refuses holds up its own queue only: never a call, another webhook or the bus.

A webhook's URL is a secret (Slack's path is its key): logs name it by number and host.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import msgspec
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ironrt._version import __version__
from ironrt.events import EventBus
from ironrt.observe.alerts_text import alert_text
from ironrt.protocol.events import Event
from ironrt.settings_table import AlertWebhook, redact_url

if TYPE_CHECKING:
    # httpx and tenacity (~120 ms of imports together) are imported by `run`: only a
    # daemon with webhooks configured ever loads them.
    import httpx

__all__ = ["AlertSender", "Delivery"]

log = logging.getLogger("ironrt.alerts")


class _Retry(Exception):
    """A failed attempt worth another: no answer, a timeout, 429 or 5xx."""


class _GiveUp(Exception):
    """An answer that another try would not change (a 3xx or 4xx but 429)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """How hard each alert is pushed: `tries` attempts within `give_up_s`, waits from
    `backoff_s` doubling (jittered) up to `backoff_max_s`, each attempt `timeout_s` long."""

    tries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    give_up_s: float = 120.0
    timeout_s: float = 10.0
    #: Alerts waiting per webhook; beyond it new ones are dropped.
    queue_max: int = 1000


@dataclass(slots=True)
class _Hook:
    number: int
    webhook: AlertWebhook
    send: MemoryObjectSendStream[Event]
    receive: MemoryObjectReceiveStream[Event]
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    dropping: bool = False
    kinds: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return f"webhook {self.number} ({redact_url(self.webhook.url)})"


class AlertSender:
    """The webhooks of one daemon; `run` in the daemon's task group."""

    def __init__(
        self, bus: EventBus, webhooks: Sequence[AlertWebhook], delivery: Delivery | None = None
    ) -> None:
        self.bus = bus
        self.delivery = delivery or Delivery()
        self.hooks: list[_Hook] = []
        for number, webhook in enumerate(webhooks, 1):
            send, receive = anyio.create_memory_object_stream[Event](self.delivery.queue_max)
            kinds = frozenset(webhook.events)
            self.hooks.append(_Hook(number, webhook, send, receive, kinds=kinds))

    def offer(self, event: Event) -> None:
        """Queue `event` for every webhook that wants its kind; never waits."""
        kind = getattr(event, "kind", None)
        for hook in self.hooks:
            if kind not in hook.kinds:
                continue
            try:
                hook.send.send_nowait(event)
                hook.dropping = False
            except anyio.WouldBlock:
                hook.dropped += 1
                if not hook.dropping:
                    hook.dropping = True
                    log.warning("%s is behind: alerts are dropped until it catches up", hook.name)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        import httpx

        timeout = httpx.Timeout(self.delivery.timeout_s)
        headers = {"user-agent": f"ironrt/{__version__}"}
        async with (
            httpx.AsyncClient(timeout=timeout, headers=headers) as client,
            self.bus.subscribe() as events,
            anyio.create_task_group() as tg,
        ):
            for hook in self.hooks:
                tg.start_soon(self._deliver, hook, client)
            task_status.started()
            async for event in events:
                self.offer(event)

    async def _deliver(self, hook: _Hook, client: httpx.AsyncClient) -> None:
        async with hook.receive:
            async for event in hook.receive:
                body = msgspec.json.encode(
                    {"text": alert_text(event), "event": msgspec.to_builtins(event)}
                )
                try:
                    await self._post(hook, client, body)
                except Exception as exc:  # whatever it was, the next alert gets its turn
                    hook.failed += 1
                    log.warning(
                        "%s: alert %s not delivered: %s",
                        hook.name,
                        getattr(event, "kind", "?"),
                        _why(exc),
                    )
                else:
                    hook.sent += 1

    async def _post(self, hook: _Hook, client: httpx.AsyncClient, body: bytes) -> None:
        import httpx  # loaded by `run` already: these are lookups
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            stop_after_attempt,
            stop_after_delay,
            wait_exponential_jitter,
        )

        d = self.delivery
        retrying = AsyncRetrying(
            stop=stop_after_attempt(d.tries) | stop_after_delay(d.give_up_s),
            wait=wait_exponential_jitter(initial=d.backoff_s, max=d.backoff_max_s),
            retry=retry_if_exception_type(_Retry),
            sleep=anyio.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    response = await client.post(
                        hook.webhook.url,
                        content=body,
                        headers={"content-type": "application/json"},
                    )
                except httpx.TransportError as exc:
                    raise _Retry(type(exc).__name__) from None
                status = response.status_code
                if status == 429 or status >= 500:
                    raise _Retry(f"HTTP {status}")
                if status >= 300:
                    raise _GiveUp(f"HTTP {status}, not retried")


def _why(exc: BaseException) -> str:
    """The failure without its URL: httpx puts the whole URL in some messages."""
    return str(exc) if isinstance(exc, _Retry | _GiveUp) else type(exc).__name__
