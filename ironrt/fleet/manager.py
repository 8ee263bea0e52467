"""The fleet manager: keeps this daemon's leases on shared scopes, off the hot path.

One task, one PostgreSQL connection. It wakes when a call waits for more lease
(`Ledger.on_want`) and at least every `poll_s`, asks `ironrt.fleet.plan` whether each
shared scope needs a sync (grow, renew, report, hand back), runs it, and puts what the
database answered into the ledger's books. When the database does not answer, it retries
every `poll_s`; calls go on inside their leases only.

Every `poll_s` it reads the fleet's limits (one query for all scopes): a limit set on any
daemon applies here within that time, and `resets_at` is the fleet's. Its local copy is
saved to the daemon's SQLite, so a restart without the database still knows them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio

from ironrt.errors import LedgerUnavailable
from ironrt.fleet.plan import Planner
from ironrt.fleet.schema import migrate
from ironrt.fleet.store import CHANNEL, FleetLimits, FleetStore, SyncAsk, SyncResult
from ironrt.governance.ledger import Ledger, Scope
from ironrt.governance.ledger.lease import EXPIRY_MARGIN_S, Lease
from ironrt.governance.ledger.scope import iso
from ironrt.protocol import LedgerStatus

log = logging.getLogger("ironrt.fleet")

#: Seconds one database round (connect, or a sync) may take before it counts as down.
OP_TIMEOUT_S = 5.0


def shared(key: str) -> bool:
    """Whether a scope is the fleet's: `global` and projects; agents stay local."""
    return key == "global" or key.startswith("project:")


def redact(url: str) -> str:
    """The URL without its password, for logs, errors and `doctor`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class FleetLedger:
    def __init__(
        self,
        url: str,
        ledger: Ledger,
        daemon_id: str,
        *,
        ttl_s: float = 60.0,
        poll_s: float = 1.0,
        idle_s: float = 10.0,
        save: Callable[[Scope], Awaitable[Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.ledger = ledger
        self.store = FleetStore(daemon_id)
        self.daemon_id = daemon_id
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.idle_s = idle_s
        self.clock = clock
        #: Persists a scope's limits locally (the books), after the fleet changed them.
        self.save = save
        self._conn: Any = None
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        self._polled_at = 0.0
        self._seen: dict[str, int] = {}
        #: Per scope: the latest unmet demand (its time in the database, the daemon) and
        #: when this daemon first saw it.
        self._unsaved: dict[str, Scope] = {}
        self._closed = False
        self.planner = Planner(daemon_id, ttl_s=ttl_s, poll_s=poll_s, idle_s=idle_s, clock=clock)
        self.available = False
        self.error: str | None = "not reached yet"
        self.schema: int | None = None
        self.synced_at: float | None = None
        self.syncs = 0
        #: Syncs by why they were made (`plan`): want, renew, report, hand_back, ...
        self.reasons: dict[str, int] = {}
        ledger.on_want = self.wake
        ledger.on_new_scope = self.attach
        for scope in list(ledger.scopes.values()):
            self.attach(scope)

    # ---- wiring ---------------------------------------------------------------------
    def attach(self, scope: Scope) -> None:
        """Give a shared scope its lease (a new one asks the database at its first call)."""
        if shared(scope.key) and scope.lease is None:
            # A scope this daemon kept alone until now: what it spent in the window is
            # its own part of the fleet's (reported at the first sync).
            scope.lease = Lease(
                own_nanos=scope.spent_nanos, available=self.available, error=self.error
            )
        if scope.lease is not None:
            scope.lease.available = self.available
            scope.lease.error = self.error
            scope.lease.margin_s = min(EXPIRY_MARGIN_S, self.ttl_s / 4)

    def wake(self) -> None:
        self._wake.set()

    def _shared(self) -> list[Scope]:
        return [s for s in self.ledger.scopes.values() if s.lease is not None]

    # ---- the loop -------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, migrate, seed and reconcile once (bounded), before the router serves:
        a database that does not answer leaves shared calls to 503 until it does."""
        with anyio.move_on_after(OP_TIMEOUT_S):
            await self._round(reconcile=True)

    async def run(self) -> None:
        while True:
            with anyio.move_on_after(self._delay()):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self._round()

    def _delay(self) -> float:
        if not self.available:
            return self.poll_s
        if any(s.lease is not None and s.lease.want_nanos for s in self._shared()):
            return self.poll_s / 4
        return self.poll_s

    async def _round(self, *, reconcile: bool = False) -> None:
        if self._closed:
            return
        try:
            async with self._lock:
                with anyio.fail_after(OP_TIMEOUT_S):
                    conn = await self._connection()
                    now = self.clock()
                    if reconcile or now - self._polled_at >= self.poll_s:
                        await self._poll(conn, seed=reconcile)
                    if reconcile:
                        self.planner.mine = await self.store.mine(conn)
                    for scope in self._shared():
                        ask = self.planner.plan(scope, self.clock(), reconcile=reconcile)
                        if ask is not None:
                            sent = self.clock()
                            result = await self.store.sync(conn, ask)
                            self.syncs += 1
                            self.reasons[ask.reason] = self.reasons.get(ask.reason, 0) + 1
                            self._adopt_sync(scope, ask, result, sent)
            self._up()
        except Exception as exc:  # any failure of the database is "down"
            await self._down(exc)
        await self._save()

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        import asyncpg

        conn = await asyncpg.connect(self.url, timeout=OP_TIMEOUT_S)
        self.schema = await migrate(conn)
        await conn.add_listener(CHANNEL, self._notified)
        self._conn = conn
        return conn

    def _notified(self, conn: Any, pid: int, channel: str, scope: str) -> None:
        """Another daemon is short of lease, or changed limits: poll now, not in a while."""
        if pid == conn.get_server_pid():
            return  # this daemon's own
        self._polled_at = 0.0
        self._wake.set()

    def _up(self) -> None:
        was = self.available
        self.available, self.error = True, None
        self.synced_at = self.clock()
        for scope in self._shared():
            self.attach(scope)
        if not was:
            log.info("fleet ledger connected", extra={"fields": {"url": redact(self.url)}})
        self.ledger.refresh(self._shared())

    async def _down(self, exc: BaseException) -> None:
        why = _reason(exc)
        if self.available or self.error != why:
            log.warning(
                "fleet ledger unavailable",
                extra={"fields": {"url": redact(self.url), "error": why}},
            )
        self.available, self.error = False, why
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
        for scope in self._shared():
            self.attach(scope)
        self.ledger.refresh(self._shared())

    # ---- limits ---------------------------------------------------------------------
    async def _poll(self, conn: Any, *, seed: bool) -> None:
        if seed:  # the first daemon on a database brings the limits it had alone
            for scope in self._shared():
                if scope.budget_nanos is not None or scope.window is not None:
                    await self.store.put_limits(conn, scope.key, _limits_of(scope), only_new=True)
        for view in await self.store.views(conn):
            limits = view.limits
            self.planner.note_demand(limits)
            scope = self.ledger.scope(limits.scope)
            self.adopt(scope, limits)
            lease = scope.lease
            if lease is not None and (scope.resets_at or 0.0) == (limits.resets_at or 0.0):
                lease.others_spent_nanos = view.others_spent_nanos
                lease.others_held_nanos = view.others_held_nanos
                lease.daemons = view.daemons
                scope.spent_nanos = lease.others_spent_nanos + lease.own_nanos
        self._polled_at = self.clock()

    def adopt(self, scope: Scope, limits: FleetLimits) -> bool:
        """Take the fleet's limits for a scope if they changed since last seen."""
        if self._seen.get(scope.key) == limits.version:
            return False
        self._seen[scope.key] = limits.version
        before = scope.budget_nanos
        scope.budget_nanos = limits.budget_nanos
        if before != limits.budget_nanos:
            scope.exhausted = False
            scope.rearm()
        if scope.window != limits.window or scope.resets_at != limits.resets_at:
            scope.window, scope.resets_at = limits.window, limits.resets_at
        scope.rpm, scope.tpm = limits.rpm, limits.tpm
        scope.max_concurrent = limits.max_concurrent
        scope.models = limits.models
        scope.pii = limits.pii  # type: ignore[assignment]
        scope.pii_types = dict(limits.pii_types) if limits.pii_types is not None else None  # type: ignore[arg-type]
        self._unsaved[scope.key] = scope
        return True

    async def _save(self) -> None:
        """Keep the fleet's limits in the local books too (a restart without the database
        still knows them), after the round, outside the connection's lock."""
        unsaved, self._unsaved = self._unsaved, {}
        if self.save is not None:
            for scope in unsaved.values():
                await self.save(scope)

    async def put_limits(self, scope: Scope) -> None:
        """Write a shared scope's limits (already applied here) for the whole fleet."""
        try:
            async with self._lock:
                with anyio.fail_after(OP_TIMEOUT_S):
                    conn = await self._connection()
                    limits = await self.store.put_limits(conn, scope.key, _limits_of(scope))
        except Exception as exc:
            await self._down(exc)
            raise LedgerUnavailable(
                f"the fleet ledger ({redact(self.url)}) did not answer ({self.error}): "
                f"the limits of {scope.key}, shared by every daemon on it, were not changed"
            ) from None
        self._seen.pop(scope.key, None)
        self.adopt(scope, limits)
        self._unsaved.pop(scope.key, None)  # the caller saves it
        self.ledger.refresh([scope])

    # ---- leases ---------------------------------------------------------------------
    def _adopt_sync(self, scope: Scope, ask: SyncAsk, result: SyncResult, sent: float) -> None:
        lease = scope.lease
        assert lease is not None
        self.adopt(scope, result.limits)
        self.planner.note_demand(result.limits)
        local_end = scope.resets_at or 0.0
        if local_end != result.window_end:
            if local_end and result.window_end > local_end:
                self.ledger.roll(scope, local_end)  # the fleet's window is over: ours too
            scope.resets_at = result.window_end or None
        if ask.window_end == result.window_end:
            lease.reported_nanos = result.reported_nanos
            # Calls settled during the round came out of the slice: granted stays put.
            lease.granted_nanos = result.granted_nanos
            lease.expires_at = sent + result.expires_in_s
        else:  # the window moved on while asking: the next round asks for the new one
            lease.expires_at = None
        lease.others_spent_nanos = result.others_spent_nanos
        lease.others_held_nanos = result.others_held_nanos
        lease.daemons = result.daemons
        lease.synced_at = self.clock()
        lease.short_streak = lease.short_streak + 1 if result.short else 0
        lease.want_nanos = lease.want_bound_nanos = 0
        scope.spent_nanos = lease.others_spent_nanos + lease.own_nanos

    async def release(self) -> None:
        """Stopping: report the spend and hand back every lease (bounded). No round runs
        after it: a lease granted after the last report would stay charged."""
        self._closed = True
        # A round in progress holds the lock for at most its own bound: it is waited for
        # (twice that at most), and the hand-back has a whole bound of its own after it.
        with anyio.move_on_after(2 * OP_TIMEOUT_S) as waiting:
            await self._lock.acquire()
        if waiting.cancelled_caught:
            why = f"a round in progress did not end within {2 * OP_TIMEOUT_S:g} s"
        else:
            try:
                why = await self._hand_back()
            finally:
                self._lock.release()
        if why:
            log.warning(
                "fleet ledger: leases not handed back at stop (charged until they expire)",
                extra={"fields": {"error": why}},
            )
        if self._conn is not None:
            with anyio.move_on_after(1):
                await self._conn.close()

    async def _hand_back(self) -> str:
        """Report every shared scope's spend and keep only what calls in flight hold
        (bounded); what went wrong, or "" once done."""
        with anyio.move_on_after(OP_TIMEOUT_S):
            try:
                conn = await self._connection()
                self.planner.mine = await self.store.mine(conn)
                for scope in self._shared():
                    ask = self.planner.plan(scope, self.clock(), reconcile=True)
                    if ask is None:
                        continue
                    sent = self.clock()
                    result = await self.store.sync(conn, ask)
                    self._adopt_sync(scope, ask, result, sent)
                    if ask.held_nanos:
                        log.warning(
                            "fleet ledger: calls in flight at stop keep their holds on the "
                            "lease until it expires",
                            extra={"fields": {"scope": scope.key, "held_nanos": ask.held_nanos}},
                        )
                return ""
            except Exception as exc:
                return _reason(exc)
        return f"the database did not answer within {OP_TIMEOUT_S:g} s"

    # ---- what doctor and the API show -----------------------------------------------
    def status(self) -> LedgerStatus:
        return LedgerStatus(
            url=redact(self.url),
            state="ok" if self.available else "unavailable",
            error=self.error,
            daemon_id=self.daemon_id,
            schema=self.schema,
            synced_at=iso(self.synced_at),
            lease_ttl_s=self.ttl_s,
            syncs=self.syncs,
            syncs_by_reason=dict(self.reasons),
            shared_scopes=sorted(s.key for s in self._shared()),
        )


def _limits_of(scope: Scope) -> dict[str, Any]:
    return {
        "budget_nanos": scope.budget_nanos,
        "window": scope.window,
        "rpm": scope.rpm,
        "tpm": scope.tpm,
        "max_concurrent": scope.max_concurrent,
        "models": list(scope.models) if scope.models is not None else None,
        "pii": scope.pii,
        "pii_types": dict(scope.pii_types) if scope.pii_types is not None else None,
    }


def _reason(exc: BaseException) -> str:
    """One line on why the database failed, never with the URL's password."""
    if isinstance(exc, TimeoutError):
        return f"no answer in {OP_TIMEOUT_S:g} s"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
