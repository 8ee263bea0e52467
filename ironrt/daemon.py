"""The daemon process: one anyio task group holding the control API, the router and the
supervisor, started in that order and stopped in reverse.

Start-up order matters for safety: the home lock is taken first (a second daemon on the
same home refuses with a clear message), a socket left by a crashed daemon is removed only
while holding that lock, agents that outlived the last daemon are reattached before the
control socket answers (so `ps` never shows a half-known state), and the router port is
bound before any agent could be started against it.

SIGTERM / SIGINT stop the daemon but leave agents running (systemd `KillMode=process`:
restarting the service never kills the work); `ironrt daemon stop` stops them first.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio

from ironrt._version import __version__
from ironrt.config import DEFAULT_ROUTER_PORT, ConfigError, Settings
from ironrt.control import api
from ironrt.daemon_heap import FreezeAfterFirstCall
from ironrt.errors import DaemonAlreadyRunning as DaemonAlreadyRunning  # re-exported
from ironrt.errors import JournalReplayFailed
from ironrt.events import EventBus
from ironrt.governance.ledger import Ledger
from ironrt.governance.pricing import Pricer
from ironrt.keys import KeysFileError, load_keys
from ironrt.observe.cost_updates import CostUpdates
from ironrt.observe.metrics import Metrics
from ironrt.observe.metrics_http import bind_metrics, metrics_app
from ironrt.pii.recall import RECALL
from ironrt.private_home import secure_home
from ironrt.protocol import DaemonStarted, DaemonStopped
from ironrt.router.service import RouterService
from ironrt.sdnotify import Notifier
from ironrt.server import Server, bind_tcp, bind_unix, limits_from, make_server
from ironrt.store import scopes as scope_store
from ironrt.store import traces as trace_store
from ironrt.store.books import Books
from ironrt.store.db import Database, SchemaTooNew
from ironrt.supervisor.supervisor import Supervisor

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ironrt.fleet.manager import FleetLedger
    from ironrt.observe.alerts import AlertSender
    from ironrt.observe.controlpanel import TelemetrySink
    from ironrt.observe.otel import OtelExporter

log = logging.getLogger("ironrt.daemon")


class _JsonLines(logging.Formatter):
    """One event per line, machine-readable: `jq` and log shippers read daemon.log as is."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        import json  # at the first line logged: off the start (~4 ms to import)

        return json.dumps(entry, default=str)


def _setup_logging(settings: Settings, foreground: bool) -> None:
    handler = logging.FileHandler(settings.log_path, encoding="utf-8")
    handler.setFormatter(_JsonLines())
    root = logging.getLogger("ironrt")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    # The HTTP servers' own logger (ironrt.wire): warnings and errors only.
    logging.getLogger("ironrt.wire").setLevel(logging.WARNING)
    _ = foreground


def acquire_lock(settings: Settings) -> IO[str]:
    fh = open(settings.lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process life
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        other = fh.read().strip() or "?"
        fh.close()
        raise DaemonAlreadyRunning(
            f"an ironrt daemon (pid {other}) is already running on {settings.home}"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    os.set_inheritable(fh.fileno(), False)
    return fh


def event_loop(wanted: str | None) -> tuple[str, dict[str, Any], str | None]:
    """The event loop the daemon runs on (`IRONRT_EVENT_LOOP`), anyio's options for it,
    and why it is not the default one (None when it is, or when it was asked for).

    uvloop unless asyncio is asked for, or uvloop cannot be imported (a platform it does
    not build for): then plain asyncio, and `daemon.log` says why. Measured alone (two
    daemons in one run, bench/event_loop.py, alternating rounds on 2 cores), uvloop won
    at concurrency 1 in every run (added p50 2-5 % lower) but at 32 only once the
    router's own Python got leaner: req/s ratios 1.011, 1.023, 0.974 at first, then
    1.043 (5 of 7 rounds), 1.030 (6 of 7, added p50 0.953 and p99 0.806 at c=1) and
    1.064 (5 of 7, added p50 0.919) in the last three runs. The rule was to make it the
    default once it wins at both, twice in a row. Named explicitly where it cannot be
    imported, the start is refused rather than silently run on asyncio.
    """
    if wanted == "asyncio":
        return "asyncio", {}, None
    try:
        import uvloop
    except ImportError:
        if wanted is None:
            return "asyncio", {}, "uvloop cannot be imported"
        raise ConfigError(
            "IRONRT_EVENT_LOOP is uvloop but uvloop cannot be imported (pip install "
            "uvloop, or set IRONRT_EVENT_LOOP=asyncio)"
        ) from None
    return "uvloop", {"loop_factory": uvloop.new_event_loop}, None


def run(settings: Settings, *, foreground: bool = True) -> int:
    loop_name, loop_options, fallback = event_loop(settings.event_loop)
    secure_home(settings)
    lock = acquire_lock(settings)
    _setup_logging(settings, foreground)
    fields = {"event_loop": loop_name, **({"because": fallback} if fallback else {})}
    log.info("event loop", extra={"fields": fields})
    try:
        anyio.run(_main, settings, backend_options=loop_options)
    except (ConfigError, KeysFileError, SchemaTooNew):
        raise  # reported by main() in one line
    except Exception:
        log.exception("daemon crashed")
        raise
    finally:
        lock.close()
    return 0


async def _bind_router(settings: Settings, db: Database) -> socket.socket:
    """The router's listening socket.

    A port the user chose is used or refused: a clear error beats agents calling a port
    that is not the one configured. Otherwise the port is placed once and kept for this
    home, because agents that outlive a daemon restart call the URL their environment was
    given: the kept port first, then (port not configured) the default 8741, then any free
    port. So a second home on the same host does not fail on 8741: it takes another port,
    and keeps it.
    """
    host, chosen = settings.router_host, settings.router_port
    if chosen:
        try:
            return bind_tcp(host, chosen)
        except OSError as exc:
            raise _bind_error(host, chosen, exc, configured=True) from None
    saved = await db.get_meta("router_port")
    kept = int(saved) if saved and saved.isdigit() else None
    wanted = [kept] if kept else []
    if chosen is None and DEFAULT_ROUTER_PORT not in wanted:
        wanted.append(DEFAULT_ROUTER_PORT)
    for port in [*wanted, 0]:
        try:
            sock = bind_tcp(host, port)
        except OSError as exc:
            if port == 0 or exc.errno not in _TAKEN:
                raise _bind_error(host, port, exc, configured=False) from None
            if port == kept:
                log.warning(
                    "the router's port %d, kept for this home, is taken: agents still running "
                    "from before cannot reach the router until they are restarted",
                    port,
                )
            continue
        placed: int = sock.getsockname()[1]
        if placed != kept:
            await db.set_meta("router_port", str(placed))
        return sock
    raise AssertionError("unreachable: port 0 binds or raises")


#: A port someone else holds (or may not be ours): try the next one.
_TAKEN = (errno.EADDRINUSE, errno.EACCES)


def _bind_error(host: str, port: int, exc: OSError, *, configured: bool) -> ConfigError:
    why = f"cannot listen on {host}:{port} for the router ({exc.strerror or exc})"
    if configured and exc.errno in _TAKEN:
        return ConfigError(
            f"{why}: IRONRT_ROUTER_PORT is {port}; choose a free port, or unset it (ironrt "
            "then takes 8741 or a free port, and keeps it for this home)"
        )
    return ConfigError(f"{why}; check IRONRT_ROUTER_HOST")


async def _main(settings: Settings) -> None:
    started = time.monotonic()
    # A daemon started from inside an agent (the CLI autostarts one) is not part of that
    # agent: without its marks, stopping the agent never finds the daemon in its tree.
    for mark in ("IRONRT_AGENT_ID", "IC_TOKEN"):
        os.environ.pop(mark, None)
    # Under systemd (`Type=notify`): read and removed before any child is spawned, so
    # only this process, the unit's main one, ever speaks to the service manager.
    notifier = Notifier.from_environ()
    db = await Database.open(settings.db_path)
    try:
        await _serve(settings, db, started, notifier)
    finally:
        notifier.close()
        with anyio.CancelScope(shield=True):
            await db.close()


async def _serve(settings: Settings, db: Database, started: float, notifier: Notifier) -> None:
    bus = EventBus(db)
    keys = load_keys(os.environ, settings.keys_path)
    router_sock = await _bind_router(settings, db)
    # Bound before any agent starts: a taken metrics port stops the start in one line.
    metrics_sock = bind_metrics(*settings.metrics_addr) if settings.metrics_addr else None
    port = router_sock.getsockname()[1]
    host = settings.router_host if ":" not in settings.router_host else f"[{settings.router_host}]"
    router_url = f"http://{host}:{port}"

    # Before anything reads the books: a daemon killed last time replays its journal.
    books = Books(db)
    replayed = await books.open_journal(settings.journal_path)
    if replayed:
        log.info("books journal replayed", extra={"fields": {"records": replayed}})
    ledger = Ledger()
    for scope in await scope_store.load_all(db):
        if settings.ledger_url is None:
            scope.lease = None  # no fleet (any more): its last known spend stays, locally
        ledger.scopes[scope.key] = scope
    supervisor = Supervisor(
        settings,
        db,
        bus,
        router_url,
        ledger,
        books,
        restart_backoff=settings.restart_backoff,
        sample_interval=settings.sample_interval,
    )
    RECALL.resize(settings.pii_recall_size)  # the process's, as the settings are
    router = RouterService(settings, db, bus, supervisor, keys, pii_rules=supervisor.pii_rules)
    db.before_read = router.drain  # the books and the events settled calls left behind
    fleet = _fleet(settings, supervisor)

    def who(agent_id: str) -> tuple[str, str | None] | None:
        """An agent's name and project, for the events about it."""
        m = supervisor.agents.get(agent_id)
        return (m.record.name, m.record.project) if m is not None else None

    bus.resolve = who
    cost_updates = CostUpdates(bus)
    router.observers.append(cost_updates.observe)
    metrics = Metrics(supervisor, router.circuits, agent_ttl=settings.metrics_agent_ttl)
    router.observers.append(metrics.observe)
    router.observers.append(FreezeAfterFirstCall().observe)  # the price tables, once loaded
    # Alert webhooks and Control Panel telemetry: both only queue, never slow a call.
    # Each exporter is imported only when configured (most daemons have none): their
    # modules are not on the start path.
    alerts: AlertSender | None = None
    if settings.alert_webhooks:
        from ironrt.observe import alerts as alert_webhooks

        alerts = alert_webhooks.AlertSender(bus, settings.alert_webhooks)
    telemetry: TelemetrySink | None = None
    if settings.telemetry_url is not None:
        from ironrt.observe import controlpanel

        telemetry = controlpanel.telemetry_from(settings, bus)
    if telemetry is not None:
        router.observers.append(telemetry.observe)

    def telemetry_state() -> str:
        return telemetry.state if telemetry is not None else "off"

    def telemetry_gauge(registry: CollectorRegistry) -> None:
        from ironrt.observe.controlpanel import register_gauge

        register_gauge(registry, telemetry_state)

    metrics.on_registry(telemetry_gauge)  # at the first scrape
    # OpenTelemetry spans and metrics: only when an OTLP endpoint is set.
    otel: OtelExporter | None = None
    if settings.otlp_endpoint or settings.otel_endpoint:
        from ironrt.observe import otel as otel_export

        otel = otel_export.build(settings, supervisor)
    if otel is not None:
        router.observers.append(otel.observe)
        # Completions are collected for spans only when they carry message content.
        router.app.config.capture_completions = otel.capture
    stopping = anyio.Event()
    keep_agents = True

    def request_shutdown(keep: bool) -> None:
        nonlocal keep_agents
        keep_agents = keep
        stopping.set()

    ctx = api.DaemonContext(
        settings=settings,
        db=db,
        bus=bus,
        supervisor=supervisor,
        router_url=router_url,
        started=started,
        provider_keys=keys.present,
        circuits=router.circuits,
        request_shutdown=request_shutdown,
        stopping=stopping,
        metrics=metrics,
        telemetry=telemetry_state,
        ledger=fleet.status if fleet is not None else (lambda: None),
    )
    control_limits, router_limits = limits_from(settings)
    control = make_server(api.build(ctx), unix=True, limits=control_limits)
    router_server = make_server(router.app, unix=False, limits=router_limits)
    metrics_server = make_server(metrics_app(metrics), unix=False) if metrics_sock else None

    async with anyio.create_task_group() as tg:
        for exporter in (telemetry, alerts):  # before the supervisor: its events are theirs too
            if exporter is not None:
                await tg.start(exporter.run)
        await router.load(await trace_store.totals_by_agent(db))
        if settings.trace_retention_s:
            # A first pass before the socket answers (bounded: a large backlog is left to
            # the background task), so no listing shows traces past their retention.
            await trace_store.prune_expired(db, settings.trace_retention_s, max_batches=5)
            tg.start_soon(trace_store.keep_pruning, db, settings.trace_retention_s)
        if fleet is not None:  # before agents call: shared scopes know the fleet's limits
            await fleet.start()
            tg.start_soon(fleet.run)
        await supervisor.run(tg, router.governance)
        sock_path = settings.socket_path
        if sock_path.exists() or sock_path.is_symlink():
            log.info("removing stale socket", extra={"fields": {"path": str(sock_path)}})
            sock_path.unlink()
        control_sock = bind_unix(str(sock_path))
        tg.start_soon(_watch_signals, request_shutdown)
        tg.start_soon(router.run)
        tg.start_soon(cost_updates.run)
        tg.start_soon(metrics.run, bus)
        if otel is not None:
            tg.start_soon(otel.run, bus)
        tg.start_soon(_warm_up, router_server, stopping, settings.pii_regions)
        async with anyio.create_task_group() as servers:
            servers.start_soon(router_server.serve, [router_sock])
            servers.start_soon(control.serve, [control_sock])
            if metrics_server is not None and metrics_sock is not None:
                servers.start_soon(metrics_server.serve, [metrics_sock])
            if notifier.enabled:

                def status() -> str:
                    running = supervisor.counts().get("running", 0)
                    return f"{running} agents running; router on {router_url}"

                both = (control, router_server)
                servers.start_soon(_announce_ready, notifier, both, stopping, status)
                tg.start_soon(notifier.run, status)
            await bus.publish(
                DaemonStarted(pid=os.getpid(), version=__version__, router_url=router_url)
            )
            log.info(
                "daemon started",
                extra={
                    "fields": {
                        "pid": os.getpid(),
                        "socket": str(sock_path),
                        "router_url": router_url,
                        "agents": supervisor.counts(),
                        "providers": sorted(keys.keys),
                        "offline": settings.offline,
                    }
                },
            )
            await stopping.wait()
            notifier.stopping("stopping" + (", agents keep running" if keep_agents else " agents"))
            with anyio.CancelScope(shield=True):
                log.info("daemon stopping", extra={"fields": {"keep_agents": keep_agents}})
                await supervisor.shutdown(keep_agents=keep_agents)
                await bus.publish(DaemonStopped(pid=os.getpid(), keep_agents=keep_agents))
                if telemetry is not None:  # queued on disk before the socket goes
                    with anyio.move_on_after(5):
                        await telemetry.save()
                # Both servers finish in-flight requests (bounded by their graceful timeout).
                control.should_exit = True
                router_server.should_exit = True
                if metrics_server is not None:
                    metrics_server.should_exit = True
        with anyio.CancelScope(shield=True):
            sock_path.unlink(missing_ok=True)
            await router.aclose()
            if fleet is not None:  # the router is closed, no call in flight: hand back
                await fleet.release()
            if otel is not None:
                await otel.aclose()  # bounded: a hung collector never holds the stop
        tg.cancel_scope.cancel()
    bus.close()  # after the task group: nothing publishes any more


def _fleet(settings: Settings, supervisor: Supervisor) -> FleetLedger | None:
    """The fleet ledger when `IRONRT_LEDGER_URL` is set (its driver is an extra)."""
    if settings.ledger_url is None:
        return None
    try:
        import asyncpg  # noqa: F401 - only checked for here, used by ironrt.fleet
    except ImportError:
        raise ConfigError(
            "IRONRT_LEDGER_URL is set but the PostgreSQL driver is not installed: "
            "pip install 'ironrt[postgres]'"
        ) from None
    from ironrt.fleet.manager import FleetLedger

    fleet = FleetLedger(
        settings.ledger_url,
        supervisor.ledger,
        daemon_identity(settings.home),
        ttl_s=settings.lease_ttl,
        poll_s=settings.ledger_poll,
        save=supervisor.books.save_scope,
    )
    supervisor.fleet = fleet
    return fleet


def daemon_identity(home: Path) -> str:
    """This home's daemon in the fleet: made once, kept across restarts (a daemon back
    from a crash reconciles its leases under the same name)."""
    path = home / "daemon_id"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    import secrets  # a fleet's daemon only, once (~9 ms to import with hmac and hashlib)

    ident = f"{socket.gethostname()}-{secrets.token_hex(6)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(ident + "\n")
    return ident


async def _announce_ready(
    notifier: Notifier,
    servers: tuple[Server, ...],
    stopping: anyio.Event,
    status: Callable[[], str],
) -> None:
    """READY=1 once the servers serve both sockets (`Server.started`), not merely once they
    are bound: systemd then orders units after ours, and they expect answers."""
    while not all(server.started for server in servers):
        if stopping.is_set():
            return  # stopped before it was ever ready: say nothing
        await anyio.sleep(0.005)
    notifier.ready(notifier.status_text(status))


async def _warm_up(server: Server, stopping: anyio.Event, regions: tuple[str, ...]) -> None:
    """What the first calls would otherwise load, loaded in a worker thread once the router
    serves: not before it answers (the start), not on an agent's first call (~0.3-0.4 s
    slower than the next ones, measured by bench/startup.py). Calls that come meanwhile
    wait at most for the same import, never see a half-built table. A failure here costs
    only the first call its speed."""
    while not server.started:
        if stopping.is_set():
            return
        await anyio.sleep(0.005)
    t0 = time.monotonic()
    try:
        # Abandoned if the daemon stops meanwhile: a stop never waits for it.
        await anyio.to_thread.run_sync(_warm, regions, abandon_on_cancel=True)
    except Exception:
        log.exception("could not load the price tables and PII checks ahead of use")
        return
    took_ms = round((time.monotonic() - t0) * 1000)
    log.info("price tables and PII checks loaded", extra={"fields": {"took_ms": took_ms}})


def _warm(regions: tuple[str, ...]) -> None:
    import email.utils  # noqa: F401 - a Retry-After date (transports/http.py)
    import urllib.request  # noqa: F401 - the proxy settings, at a host's first call

    import tenacity  # noqa: F401 - the retry policy's backoff, at the first retry
    import yarl  # noqa: F401 - a configured base URL, at its first call (providers/base.py)

    from ironrt.pii.warm import warm as warm_pii  # the detectors: not on the start path

    warm_pii(regions)  # phonenumbers and the regions' numbering plans (ironrt/pii/warm.py)
    # genai-prices' tables and the arithmetic a price takes (governance/pricing.py).
    Pricer().check("openai", "gpt-4o-mini")


async def _watch_signals(request_shutdown: Any) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                continue  # reserved for reloading config; must not kill the daemon
            log.info("signal received", extra={"fields": {"signal": signal.Signals(signum).name}})
            request_shutdown(True)
            return


def main(argv: list[str] | None = None) -> int:
    """`python -m ironrt.daemon`: what `ironrt daemon start` runs in the background."""
    _ = argv
    try:
        return run(Settings.load())
    except DaemonAlreadyRunning as exc:
        print(f"ironrt: {exc}", file=sys.stderr)
        return 3
    except (ConfigError, KeysFileError, SchemaTooNew, JournalReplayFailed, OSError) as exc:
        # Start-up problems the user can fix: one clear line (the CLI shows it), no traceback.
        # Into daemon.log only once it is set up: before that (a bad setting), logging would
        # fall back to stderr and say it twice.
        if logging.getLogger("ironrt").handlers:
            log.error("daemon cannot start: %s", exc)
        print(f"ironrt: the daemon cannot start: {exc}", file=sys.stderr)
        return 2


def _exit(code: int) -> None:
    """Leave without the interpreter's teardown: everything the daemon owns is closed by
    now (database, sockets, log relay connection), and tearing down the modules of the
    pricing and phone-number tables took ~0.4 s of CPU at every stop or restart."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
