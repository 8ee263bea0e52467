"""Control Panel telemetry: events and call records, batched to `POST {url}/api/telemetry`.

Optional and harmless by design (the deployment document: "buffers if the Control Panel
is unavailable, disables telemetry after 3 failed attempts, no impact on agent
execution"):

- a settled call is handed over by `observe` (one of the router's call observers), which
  only appends its record to a bounded in-memory buffer; events come from the bus the
  same way. A task moves the buffer to the on-disk queue (`controlpanel_queue`) every
  `flush_s`, so no call ever waits on a disk or a network;
- a second task sends the queue's oldest items in batches (`Authorization: Bearer
  TOKEN`) and deletes them only once the Control Panel answered 2xx, so a restart resends
  what was not acknowledged (the receiver dedupes by `seq`, unique across restarts);
- a failed attempt is retried after a doubling backoff; after 3 consecutive failed
  attempts the state is `disabled` (one log line) and one batch is tried every
  `IRONRT_TELEMETRY_REPROBE`; when one goes through, the state is `enabled` again and
  the queue drains. Meanwhile the queue keeps filling, up to its bound.

A call record is the `Trace` (tokens, cost, timings, model, status: never a prompt, a
reply or a key). The token is never logged, queued or put in an error: failures are
logged by their kind (`ConnectError`, `HTTP 503`), and the URL by its host only.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio
import msgspec
from anyio.abc import TaskStatus

from ironrt._version import __version__
from ironrt.config import Settings
from ironrt.events import EventBus
from ironrt.governance.flow import Flow
from ironrt.observe.controlpanel_queue import Item, ItemType, TelemetryQueue
from ironrt.protocol import Trace
from ironrt.settings_table import redact_url

if TYPE_CHECKING:
    # httpx (~100 ms of imports with what it brings) and prometheus_client are imported
    # where they are used: a daemon without telemetry never loads them.
    import httpx
    from prometheus_client import CollectorRegistry, Gauge

__all__ = [
    "FAILURES_TO_DISABLE",
    "Pacing",
    "TelemetrySink",
    "TelemetryState",
    "register_gauge",
    "telemetry_from",
]

log = logging.getLogger("ironrt.telemetry")

TelemetryState = Literal["enabled", "disabled", "off"]
#: Consecutive failed attempts after which telemetry is disabled (until a re-probe works).
FAILURES_TO_DISABLE = 3


@dataclass(frozen=True, slots=True)
class Pacing:
    """Sizes and times of the sender (tests shorten them)."""

    batch_max: int = 500
    #: Items waiting in memory for the disk; beyond it new ones are dropped (counted).
    buffer_max: int = 10_000
    flush_s: float = 0.2
    backoff_s: float = 0.5
    backoff_max_s: float = 60.0
    timeout_s: float = 10.0


class TelemetrySink:
    """One daemon's telemetry; `run` in the daemon's task group, `observe` a call observer."""

    def __init__(
        self,
        bus: EventBus,
        queue: TelemetryQueue,
        url: str,
        token: str,
        reprobe_s: float,
        *,
        pacing: Pacing | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.bus = bus
        self.queue = queue
        self.endpoint = url.rstrip("/") + "/api/telemetry"
        self._token = token
        self.reprobe_s = reprobe_s
        self.pacing = pacing or Pacing()
        self.state: TelemetryState = "enabled"
        #: Items the Control Panel acknowledged, and items dropped before reaching the disk.
        self.sent = 0
        self.buffer_dropped = 0
        self._buffer: deque[tuple[ItemType, bytes]] = deque()
        self._queued = anyio.Event()
        self._events: object = None
        self._flushing = anyio.Lock()
        if registry is not None:
            register_gauge(registry, lambda: self.state)

    def __repr__(self) -> str:  # never the token
        return f"TelemetrySink({redact_url(self.endpoint)!r}, state={self.state!r})"

    # ---- taking items: never waits ----------------------------------------------------

    def observe(self, trace: Trace, flow: Flow) -> None:
        """A settled call's record (the router's call observer)."""
        self._push("call", msgspec.json.encode(trace))

    def _push(self, kind: ItemType, data: bytes) -> None:
        if len(self._buffer) >= self.pacing.buffer_max:
            self.buffer_dropped += 1
            if self.buffer_dropped == 1 or self.buffer_dropped % 10_000 == 0:
                log.warning("telemetry buffer full: %d items dropped", self.buffer_dropped)
            return
        self._buffer.append((kind, data))

    # ---- the tasks --------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        import httpx

        try:
            await self.queue.open()
        except (OSError, sqlite3.Error) as exc:  # telemetry is optional: the daemon goes on
            log.error("telemetry off: cannot open %s: %s", self.queue.path, exc)
            self.state = "disabled"
            task_status.started()
            return
        headers = {
            "authorization": f"Bearer {self._token}",
            "content-type": "application/json",
            "user-agent": f"ironrt/{__version__}",
        }
        timeout = httpx.Timeout(self.pacing.timeout_s)
        async with (
            httpx.AsyncClient(timeout=timeout, headers=headers) as client,
            self.bus.subscribe(buffer=self.pacing.buffer_max) as events,
        ):
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._flush_forever)
                    tg.start_soon(self._send_forever, client)
                    log.info("telemetry to %s enabled", redact_url(self.endpoint))
                    self._events = events
                    task_status.started()
                    async for event in events:
                        self._push("event", msgspec.json.encode(event))
            finally:
                # What is still in memory goes to disk, to be sent after the restart: the
                # events published as the daemon stopped (DaemonStopped) included.
                self._drain(events)
                with anyio.move_on_after(5, shield=True):
                    await self._flush()
                    await self.queue.close()

    async def save(self) -> None:
        """Everything taken so far onto the disk, the events published until now included:
        the daemon calls it as it stops, before its control socket goes (a stop that
        waits no longer than that, or a SIGKILL after it, then loses nothing)."""
        self._drain(self._events)
        await self._flush()

    def _drain(self, events: object) -> None:
        """The events the subscription holds but the loop has not taken yet."""
        take = getattr(events, "receive_nowait", None)
        while callable(take):
            try:
                self._push("event", msgspec.json.encode(take()))
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return

    async def _flush(self) -> None:
        # One flush at a time: `save` returns only once what an earlier flush took is on
        # disk too.
        async with self._flushing:
            if not self._buffer:
                return
            items = list(self._buffer)
            self._buffer.clear()
            await self.queue.append(items)
        self._queued.set()

    async def _flush_forever(self) -> None:
        while True:
            await anyio.sleep(self.pacing.flush_s)
            try:
                await self._flush()
            except Exception:  # a full disk: telemetry waits, the daemon goes on
                log.exception("could not write the telemetry queue")

    async def _send_forever(self, client: httpx.AsyncClient) -> None:
        source = {"daemon": self.queue.daemon_id, "host": socket.gethostname()}
        source["version"] = __version__
        failures = 0
        while True:
            batch = await self.queue.peek(self.pacing.batch_max)
            if not batch:
                self._queued = anyio.Event()
                with anyio.move_on_after(1.0):  # the flush sets it; a second is the backstop
                    await self._queued.wait()
                continue
            why = await self._post(client, source, batch)
            if why is None:
                await self.queue.ack(batch[-1][0])
                self.sent += len(batch)
                if self.state == "disabled":
                    log.info("telemetry enabled again: the Control Panel answers")
                self.state = "enabled"
                failures = 0
                continue
            failures += 1
            if self.state == "enabled":
                log.warning("telemetry attempt %d failed: %s", failures, why)
                if failures >= FAILURES_TO_DISABLE:
                    self.state = "disabled"
                    log.warning(
                        "telemetry disabled after %d failed attempts; retried every %gs, "
                        "items stay queued (up to %d)",
                        failures,
                        self.reprobe_s,
                        self.queue.max_items,
                    )
            if self.state == "disabled":
                delay = self.reprobe_s
            else:
                delay = min(self.pacing.backoff_s * 2 ** (failures - 1), self.pacing.backoff_max_s)
            await anyio.sleep(delay)

    async def _post(
        self, client: httpx.AsyncClient, source: dict[str, str], batch: list[Item]
    ) -> str | None:
        """None if the Control Panel took the batch, else why not (no URL, no token)."""
        items = [{"seq": seq, "type": kind, "data": msgspec.Raw(data)} for seq, kind, data in batch]
        body = msgspec.json.encode({"source": source, "items": items})
        import httpx  # loaded by `run` already: a lookup

        try:
            response = await client.post(self.endpoint, content=body)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"


def telemetry_from(settings: Settings, bus: EventBus) -> TelemetrySink | None:
    """The daemon's telemetry sink, None when `IRONRT_TELEMETRY_URL` is not set."""
    if settings.telemetry_url is None or settings.telemetry_token is None:
        return None
    queue = TelemetryQueue(settings.home / "telemetry.sqlite", settings.telemetry_queue_max)
    return TelemetrySink(
        bus,
        queue,
        settings.telemetry_url,
        settings.telemetry_token,
        settings.telemetry_reprobe,
    )


def register_gauge(registry: CollectorRegistry, state: Callable[[], str]) -> Gauge:
    """`ironrt_telemetry_enabled` (1/0) in `registry`, read from `state()` at each scrape."""
    from prometheus_client import Gauge

    gauge = Gauge(
        "ironrt_telemetry_enabled",
        "1 while Control Panel telemetry is enabled; 0 when disabled (after 3 failed "
        "attempts, until a re-probe works) or not configured",
        registry=registry,
    )
    gauge.set_function(lambda: 1.0 if state() == "enabled" else 0.0)
    return gauge
