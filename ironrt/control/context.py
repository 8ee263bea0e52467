"""What every control handler is given besides its request: the daemon's parts.

Handlers are module-level functions `(Request, DaemonContext) -> Response`, grouped by
resource (`agents`, `limits`, `observe`, `daemon_calls`); `ironrt.control.api.build`
binds them to the calls of `ironrt.calls` with the one context of the running daemon.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from ironrt.config import Settings
from ironrt.control.http import Request, Response
from ironrt.events import EventBus
from ironrt.observe.metrics import Metrics
from ironrt.protocol import LedgerStatus
from ironrt.store.db import Database
from ironrt.supervisor.supervisor import Supervisor

__all__ = ["CallHandler", "DaemonContext"]


@dataclass(slots=True)
class DaemonContext:
    settings: Settings
    db: Database
    bus: EventBus
    supervisor: Supervisor
    router_url: str
    started: float
    provider_keys: Callable[[], dict[str, bool]]
    circuits: Callable[[], dict[str, str]]
    request_shutdown: Callable[[bool], None]
    stopping: anyio.Event
    #: The daemon's Prometheus metrics (`GET /metrics`).
    metrics: Metrics | None = None
    #: Control Panel telemetry's state, `enabled`, `disabled` or `off` (health, doctor).
    telemetry: Callable[[], str] = lambda: "off"
    #: The fleet ledger's connection (None: no IRONRT_LEDGER_URL).
    ledger: Callable[[], LedgerStatus | None] = lambda: None


#: One control call's handler.
CallHandler = Callable[[Request, DaemonContext], Awaitable[Response]]
