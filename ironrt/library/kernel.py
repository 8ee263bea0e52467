"""The process's governance kernel in library mode: one event loop thread, started on the
first `ironrt.protect`, serving every governed SDK call of the process.

All kernel state (the ledger, the policies' per-agent state, the breaker, the books) lives
on that one loop, whatever thread or event loop the calls come from: a sync client's
thread blocks on a portal call, an async client awaits a future. The loop runs the very
router app and service the daemon runs (`LibraryApp`, `RouterService`): the same policies
in the same order, the same settlement, written to `$IRONRT_HOME`'s database beside a
running daemon (SQLite in WAL mode, with the daemon's own busy timeout).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
from anyio.streams.memory import MemoryObjectReceiveStream

from ironrt.config import Settings
from ironrt.errors import HomeNotPrivate
from ironrt.events import EventBus
from ironrt.governance.agent import AgentGovernance
from ironrt.governance.ledger import Ledger, scope_key
from ironrt.keys import ProviderKeys
from ironrt.library.app import LibraryApp
from ironrt.library.calls import CURRENT_CALL, SdkCall
from ironrt.library.transport import SdkTransport
from ironrt.pii.recall import RECALL
from ironrt.policies.pii_rules import RulesFiles, rules_files
from ironrt.protocol import AgentStatus, OnBudget, PiiMode
from ironrt.router.egress import RouterConfig
from ironrt.router.relay import DRAIN_AFTER_DISCONNECT_S
from ironrt.router.service import RouterService
from ironrt.store import agents as agent_store
from ironrt.store.books import Books
from ironrt.store.db import Database

Message = dict[str, Any]

#: How long the process's exit waits for calls still in flight to settle: a stream left
#: early drains the upstream's usage for at most the router's drain time.
EXIT_DRAIN_S = DRAIN_AFTER_DISCONNECT_S + 5.0
T = TypeVar("T")


@dataclass(slots=True)
class Started:
    """The head of a governed call's answer, and its body: whole, or still coming."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    chunks: MemoryObjectReceiveStream[Message] | None = None
    gone: anyio.Event | None = None


class _Agents:
    """The router service's view of the agents: library scopes, known by their flows."""

    def __init__(self, ledger: Ledger, books: Books) -> None:
        self.ledger = ledger
        self.books = books

    def governance_for_token(self, hashed: str) -> AgentGovernance | None:
        return None  # library calls are never known by a token

    async def stop(self, ref: str, timeout: float, reason: Any = "budget") -> Any:
        return None  # `--on-budget stop` is refused in library mode: nothing to stop


@dataclass(slots=True)
class LibraryKernel:
    settings: Settings
    portal: anyio.from_thread.BlockingPortal
    loop: asyncio.AbstractEventLoop | None = None
    db: Database | None = None
    service: RouterService | None = None
    #: The home's `pii.toml` entities, shared with the router's PII policy.
    pii_rules: RulesFiles | None = None
    _tg: anyio.abc.TaskGroup | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    #: The agent ids of the scopes open now.
    live: set[str] = field(default_factory=set)
    #: The calls being served now, each by its `gone` event (set: the client hung up).
    serving: set[anyio.Event] = field(default_factory=set)
    _idle: anyio.Event | None = None

    # ---- start -------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the kernel's loop from another thread and wait for it (plain
        asyncio: about half the cost of a portal call, which spawns a task group per call)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` run on the kernel's loop, from another event loop."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wrap_future(future)

    async def _open(self) -> None:
        self.loop = asyncio.get_running_loop()
        settings = self.settings
        _private_home(settings)
        db = self.db = await Database.open(settings.db_path)
        with contextlib.suppress(OSError):  # the daemon's own mode for it
            os.chmod(settings.db_path, 0o600)
        await db.migrate()
        ledger = Ledger()
        books = Books(db)
        self.pii_rules = rules_files(settings)  # the router's, so scopes are checked by it
        RECALL.resize(settings.pii_recall_size)  # the process's, as the kernel is
        service = RouterService(
            settings,
            db,
            EventBus(db),
            _Agents(ledger, books),
            ProviderKeys(),
            pii_rules=self.pii_rules,
        )
        service.app = LibraryApp(
            RouterConfig(offline=False, base_urls={}, keys=lambda provider: None),
            service.pipeline,
            service.upstream,
            lambda hashed: None,
            service.settle,
            ledger,
            settings.admission_timeout,
            transport=SdkTransport(),
            after_answer=service.after_answer,
        )
        service.app.live = self.live
        self.service = service

    async def _main(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            assert self.service is not None
            tg.start_soon(self.service.run)
            self._ready.set()
            await anyio.sleep_forever()

    # ---- scopes ------------------------------------------------------------------------

    async def open_scope(
        self,
        name: str,
        budget: float | None,
        pii: PiiMode,
        rpm: int | None,
        tpm: int | None,
        on_budget: OnBudget,
        pii_types: dict[str, PiiMode] | None = None,
    ) -> AgentGovernance:
        assert self.service is not None and self.db is not None
        if pii_types is not None and self.pii_rules is not None:
            # A type no detector reports (a custom entity since removed from pii.toml):
            # refused before the scope exists, as the daemon refuses it (ValueError).
            self.pii_rules.check_types(pii_types, None)
        stored = agent_store.library_record(
            name, budget_usd=budget, pii=pii, rpm=rpm, tpm=tpm, on_budget=on_budget
        )
        stored.record.pii_types = pii_types
        agent_id = stored.record.id
        ledger = self.service.ledger
        own = ledger.scope(scope_key("agent", agent_id))
        own.raise_hint = "a larger `budget=` in `ironrt.protect` (a new scope)"
        ledger.set_limits(own, {"budget_usd": budget, "rpm": rpm, "tpm": tpm})
        gov = AgentGovernance(
            agent_id,
            name=stored.record.name,
            pid=os.getpid(),
            scopes=(own,),
            on_budget=on_budget,
            pii=pii,
            pii_types=pii_types,
        )
        await agent_store.save_library_agent(self.db, stored)
        self.live.add(agent_id)
        return gov

    async def close_scope(self, gov: AgentGovernance, error: str | None) -> None:
        assert self.service is not None and self.db is not None
        self.live.discard(gov.agent_id)
        status = AgentStatus.FAILED if error else AgentStatus.STOPPED
        await agent_store.end_library_agent(
            self.db, gov.agent_id, error=error, spent_usd=gov.spent_usd, status=status
        )
        self.service.ledger.drop(scope_key("agent", gov.agent_id))

    # ---- calls -------------------------------------------------------------------------

    async def serve(self, call: SdkCall, scope: dict[str, Any], body: bytes) -> Started:
        """Run one call through the app; return once its answer's head is known (with
        the whole body, unless the answer is a stream)."""
        assert self._tg is not None and self.service is not None
        app = self.service.app
        send_end, receive_end = anyio.create_memory_object_stream[Message](math.inf)
        gone = anyio.Event()
        asked = False

        async def receive() -> Message:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            send_end.send_nowait(message)

        async def run() -> None:
            CURRENT_CALL.set(call)
            self.serving.add(gone)
            try:
                with send_end:
                    await app(scope, receive, send)
            finally:
                self.serving.discard(gone)
                if not self.serving and self._idle is not None:
                    self._idle.set()

        self._tg.start_soon(run)
        head = await receive_end.receive()
        status, headers = int(head["status"]), list(head.get("headers", []))
        streamed = any(k.lower() == b"content-type" and b"event-stream" in v for k, v in headers)
        if streamed:
            return Started(status, headers, None, receive_end, gone)
        parts: list[bytes] = []
        with receive_end:
            async for message in receive_end:
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        return Started(status, headers, b"".join(parts))

    async def finish(self, timeout: float) -> None:
        """The process is exiting: hang up every call still in flight (nobody will read
        it now) and give them `timeout` seconds to settle. A stream the client left early
        is settled only once the upstream's usage is drained (as in the router); without
        this wait the interpreter would kill the kernel first, and the call's trace and
        spend would never be written."""
        for gone in list(self.serving):
            gone.set()
        with anyio.move_on_after(timeout):
            while self.serving:
                self._idle = anyio.Event()
                await self._idle.wait()

    @staticmethod
    async def next_chunk(started: Started) -> bytes | None:
        """The next piece of a streamed answer; None at its end."""
        assert started.chunks is not None
        try:
            message = await started.chunks.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            started.chunks.close()
            return body or None
        return body

    @staticmethod
    async def hang_up(started: Started) -> None:
        """The client closed the stream early: the app sees a disconnect and settles."""
        if started.gone is not None:
            started.gone.set()
        if started.chunks is not None:
            started.chunks.close()


def _private_home(settings: Settings) -> None:
    """The home is created private, and refused if another user owns it (the daemon's own
    check, without its process-wide umask: this is the user's process, not ours)."""
    home = settings.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = home.stat().st_uid
    if owner != os.getuid():
        raise HomeNotPrivate(
            f"{home} belongs to uid {owner}, not to this user ({os.getuid()}): set "
            "IRONRT_HOME to a directory of your own"
        )


_lock = threading.Lock()
_kernel: LibraryKernel | None = None


def _start_portal() -> tuple[anyio.from_thread.BlockingPortal, threading.Thread]:
    """A portal on an event loop in a daemon thread: it never keeps the process from
    exiting (anyio's own `start_blocking_portal` runs in an executor thread, which the
    interpreter joins at exit), and every answered call was committed before its answer."""
    found: list[anyio.from_thread.BlockingPortal] = []
    failed: list[BaseException] = []
    ready = threading.Event()

    async def main() -> None:
        async with anyio.from_thread.BlockingPortal() as portal:
            found.append(portal)
            ready.set()
            await portal.sleep_until_stopped()

    def run() -> None:
        try:
            anyio.run(main)
        except BaseException as exc:  # reported to the thread that waits for the portal
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="ironrt-library", daemon=True)
    thread.start()
    ready.wait()
    if failed:
        raise failed[0]
    return found[0], thread


def kernel() -> LibraryKernel:
    """The process's kernel, started on first use."""
    global _kernel
    with _lock:
        if _kernel is None:
            portal, thread = _start_portal()
            try:
                k = LibraryKernel(Settings.load(), portal)
                portal.call(k._open)
            except BaseException:
                with contextlib.suppress(Exception):  # no thread left behind; next try anew
                    portal.call(portal.stop, True)
                thread.join(5)
                raise
            portal.start_task_soon(k._main)
            k._ready.wait(10)
            _kernel = k
            atexit.register(_at_exit)
        return _kernel


def started() -> bool:
    """The kernel runs already (`kernel()` will not block to start it)."""
    return _kernel is not None


def _at_exit() -> None:
    """Settle what is still in flight before the interpreter stops the kernel's thread
    (atexit handlers run while daemon threads still do). Bounded by the router's drain."""
    k = _kernel
    if k is None:
        return
    with contextlib.suppress(Exception):
        k.portal.call(k.finish, EXIT_DRAIN_S)
