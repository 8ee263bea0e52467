"""The sync Python client of the daemon: `Runtime` (its anyio twin is `ironrt.aclient`).

Both twins speak the control API over the Unix socket with the protocol's Structs and raise
the `ironrt.errors` classes the daemon names in its error bodies. Both start the daemon in
the background when none answers (as the CLI does), unless autostart is off.

This twin speaks HTTP through `ironrt.uds` (httptools, no `email`/`ssl` imports): the CLI is
built on it, and a CLI that answers in a blink cannot afford a heavy HTTP stack. The async
twin uses httpx's Unix-socket transport. Every request is a `Call` built by
`ironrt.client_requests`, and every answer is decoded there, so the two cannot disagree:
each method here only sends a call and picks the result out of the answer.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack

import msgspec

from ironrt import client_requests as req
from ironrt import uds
from ironrt.client_requests import PiiTypes as PiiTypes  # re-exported
from ironrt.client_requests import StartOptions as StartOptions  # re-exported
from ironrt.client_requests import default_python as default_python  # re-exported
from ironrt.config import Settings
from ironrt.errors import DaemonUnavailable
from ironrt.protocol import (
    Agent,
    Event,
    Health,
    Metrics,
    PiiMode,
    ScopeLimits,
    Trace,
    TraceList,
    Usage,
)
from ironrt.uds import Reply

if TYPE_CHECKING:
    import subprocess

T = TypeVar("T")
_AUTOSTART_WAIT_S = 15.0


def spawn_daemon(settings: Settings) -> subprocess.Popen[bytes]:
    """Start `python -m ironrt.daemon` detached; it inherits this environment (and so the
    provider keys the user exported), as PM2's daemon does."""
    import subprocess  # only when a daemon must be started: the CLI's start-up stays light

    from ironrt.sdnotify import NOTIFY_VARIABLES

    settings.ensure_home()
    # 0600 like everything in the home: start-up errors may quote settings.
    fd = os.open(settings.home / "daemon.err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    err = os.fdopen(fd, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "ironrt.daemon"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            cwd=str(settings.home),
            # Not the service manager's variables of a unit this CLI may run in (an
            # `ExecStartPost=ironrt up`): a daemon started here is not that unit's.
            env={
                **{k: v for k, v in os.environ.items() if k not in NOTIFY_VARIABLES},
                "IRONRT_HOME": str(settings.home),
            },
        )
    finally:
        err.close()


def _startup_error(settings: Settings) -> str:
    try:
        text = (settings.home / "daemon.err").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return text[-1] if text else ""


class Runtime:
    """Drive the ironrt daemon from Python. `Runtime(budget=50.0, project="search")` sets
    the default budget and project of the agents it starts."""

    def __init__(
        self,
        budget: float | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        autostart: bool | None = None,
        timeout: float = 60.0,
        project: str | None = None,
    ) -> None:
        env = dict(os.environ)
        if home is not None:
            env["IRONRT_HOME"] = str(home)
        self.settings = Settings.load(env)
        self.budget = budget
        self.project = req.checked_project(project)
        self.autostart = (not self.settings.no_autostart) if autostart is None else autostart
        self.timeout = timeout

    # ---- transport --------------------------------------------------------------------
    def _send(self, method: str, path: str, body: bytes | None, timeout: float | None) -> Reply:
        socket_path = str(self.settings.socket_path)
        try:
            return uds.request(socket_path, method, path, body, timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            if not self.autostart:
                raise DaemonUnavailable(self._down_message()) from None
        except TimeoutError:
            raise DaemonUnavailable(f"the daemon did not answer within {timeout}s") from None
        except ConnectionError:  # reset or closed mid-request: a daemon on its way out
            raise DaemonUnavailable(req.DAEMON_WENT) from None
        self.ensure_daemon()
        return uds.request(socket_path, method, path, body, timeout)

    def _down_message(self) -> str:
        return req.daemon_down(self.settings.home)

    def _call(self, call: req.Call[T]) -> T:
        timeout = self.timeout if call.timeout is None else call.timeout
        resp = self._send(call.method, call.path, call.body, timeout)
        try:
            body = resp.read()
        except ConnectionError:
            raise DaemonUnavailable(req.DAEMON_WENT) from None
        finally:
            resp.close()
        return req.decode(resp.status, body, call.answer)

    def _stream(self, call: req.Call[T]) -> Reply:
        """A followed answer (no timeout: it lasts as long as what it follows)."""
        resp = self._send(call.method, call.path, call.body, None)
        if resp.status >= 400:
            try:
                req.raise_for_error(resp.status, resp.read())
            finally:
                resp.close()
        return resp

    # ---- the daemon -------------------------------------------------------------------
    def ping(self) -> bool:
        """Whether a daemon answers (within 2 s); never starts one."""
        try:
            call = req.version()
            reply = uds.request(str(self.settings.socket_path), call.method, call.path, None, 2.0)
        except OSError:
            return False
        try:
            reply.read()
            return reply.status == 200
        except OSError:
            return False
        finally:
            reply.close()

    def ensure_daemon(self) -> None:
        """Start the daemon in the background if none answers; return once it does. When
        ironrt is installed as a systemd service for this home, systemd starts it."""
        if self.ping():
            return
        from ironrt.service_start import installed_for, start_service

        service = installed_for(self.settings.home)
        if service is not None:  # the service's daemon, not one outside it
            start_service(service, self.settings.home)
            deadline = time.monotonic() + _AUTOSTART_WAIT_S
            while time.monotonic() < deadline:
                if self.ping():
                    return
                time.sleep(0.02)
            raise DaemonUnavailable(
                f"the ironrt service started but did not answer within {_AUTOSTART_WAIT_S:.0f}s"
            )
        proc = spawn_daemon(self.settings)
        deadline = time.monotonic() + _AUTOSTART_WAIT_S
        while time.monotonic() < deadline:
            if self.ping():
                return
            code = proc.poll()
            if code is not None and not self.ping():
                if code == 3 and self.ping():  # another daemon won the race: fine
                    return
                detail = _startup_error(self.settings)
                raise DaemonUnavailable(f"the daemon failed to start (exit {code}): {detail}")
            time.sleep(0.02)
        raise DaemonUnavailable(f"the daemon did not answer within {_AUTOSTART_WAIT_S:.0f}s")

    def health(self) -> Health:
        return self._call(req.health())

    def shutdown_daemon(self, *, keep_agents: bool = False, wait: float = 60.0) -> None:
        """Stop the daemon (and its agents unless keep_agents); returns once it is gone."""
        if not self.ping():
            raise DaemonUnavailable(self._down_message())
        self._call(req.shutdown_daemon(keep_agents))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not self.settings.socket_path.exists() or not self.ping():
                return
            time.sleep(0.05)
        raise DaemonUnavailable(f"the daemon did not stop within {wait}s")

    # ---- agents -----------------------------------------------------------------------
    def start_agent(
        self, path: str | Sequence[str], args: Sequence[str] = (), **options: Unpack[StartOptions]
    ) -> str:
        """Start an agent (see `StartOptions`); returns its id. An unknown option raises
        TypeError and a bad value InvalidRequest, before anything is sent."""
        call = req.start_agent(path, args, options, budget=self.budget, project=self.project)
        return self._call(call).id

    def list_agents(self) -> list[Agent]:
        return self._call(req.list_agents()).agents

    def list_agents_with_metrics(self) -> list[tuple[Agent, Metrics]]:
        """Every agent with its metrics, in one request (what `ps` and `top` show)."""
        found = self._call(req.list_agents(metrics=True))
        return list(zip(found.agents, found.metrics or [], strict=True))

    def get_agent(self, ref: str) -> Agent:
        return self._call(req.get_agent(ref))

    def get_metrics(self, ref: str) -> Metrics:
        return self._call(req.get_metrics(ref))

    def stop_agent(self, ref: str, timeout: float = 10.0) -> Agent:
        return self._call(req.stop_agent(ref, timeout))

    def restart_agent(self, ref: str, timeout: float = 10.0) -> Agent:
        return self._call(req.restart_agent(ref, timeout))

    def remove_agent(self, ref: str, *, force: bool = False) -> Agent:
        return self._call(req.remove_agent(ref, force))

    def update_agent(self, ref: str, **changes: object) -> Agent:
        """Change budget_usd, pii, pii_types, on_budget, rpm or tpm of an agent, also while
        it runs (None removes a limit, or the type selection). An unknown field raises
        TypeError, a bad value InvalidRequest, before anything is sent.

        `pii_types` takes the map (`{"EMAIL": "redact"}`) or `start_agent`'s forms
        (`"email,secret=block"`); a type named without an action gets the `pii` given
        with it, else the agent's current one (fetched first)."""
        current = None
        if req.wants_update_pii(changes):
            current = (self.get_agent(ref)).pii
        return self._call(req.update_agent(ref, changes, current))

    def set_budget(self, ref: str, budget_usd: float) -> Agent:
        return self.update_agent(ref, budget_usd=budget_usd)

    def wait(self, ref: str, timeout: float | None = None) -> Agent:
        """Block until the agent has ended for good; WaitTimeout if it has not by `timeout`."""
        until = req.deadline(timeout)
        while True:
            agent = self._call(req.wait_poll(ref, until))
            if not agent.status.live:
                return agent
            if error := req.wait_timeout(agent, until, timeout):
                raise error

    def logs(self, ref: str, tail: int = 100) -> str:
        return self._call(req.logs(ref, tail))

    def follow_logs(self, ref: str, tail: int = 10) -> Iterator[bytes]:
        """Yield the agent's output as it is written, until the agent ends."""
        resp = self._stream(req.follow_logs(ref, tail))
        try:
            while chunk := resp.read1(65536):
                yield chunk
        finally:
            resp.close()

    def events(
        self,
        *,
        agent: str | None = None,
        since: int = 0,
        limit: int = 100,
        follow: bool = False,
        kind: str | Sequence[str] | None = None,
        project: str | None = None,
    ) -> Iterator[Event]:
        """Typed events after id `since`, oldest first: up to `limit` of them, or with
        `follow` that backlog and then live events until the daemon stops. `kind` (one, a
        comma list, or several) and `project` filter. A followed stream that breaks is
        opened again after the last event it gave: nothing is missed, nothing repeated."""
        kinds = req.event_kinds(kind)
        if not follow:
            yield from self._call(req.events(agent, since, limit, kinds, project)).events
            return
        last, tries = since, 0
        while tries < req.FOLLOW_RETRIES:
            if tries:
                time.sleep(0.1 * tries)
                if not self.ping():
                    return  # the daemon is gone: the follower ends, as before
            resp = self._stream(req.follow_events(agent, last, limit, kinds, project))
            tries += 1
            try:
                while line := resp.readline():
                    if (event := req.event_line(line)) is not None and event.id > last:
                        last, tries = event.id, 0
                        yield event
            except (OSError, msgspec.DecodeError):
                pass  # a broken stream: opened again after `last`
            finally:
                resp.close()

    def usage(
        self,
        by: str = "agent",
        agent: str | None = None,
        *,
        since: str | None = None,
        until: str | None = None,
        project: str | None = None,
    ) -> Usage:
        """Calls, tokens and spend grouped `by` agent, provider, model, project, day or
        hour (UTC), over [`since`, `until`): ISO 8601 times or durations before now
        (`24h`, `7d`). Refused calls are counted apart (`refused_calls`)."""
        return self._call(req.usage(by, agent, since=since, until=until, project=project))

    def traces(
        self,
        agent: str | None = None,
        limit: int = 50,
        *,
        project: str | None = None,
        model: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[Trace]:
        """The last `limit` LLM calls matching the filters, newest last (`status`: ok,
        error or refused). `trace_page` pages through all of them."""
        page = self.trace_page(
            agent=agent,
            project=project,
            model=model,
            status=status,
            since=since,
            until=until,
            limit=limit,
        )
        return page.traces[::-1]

    def trace_page(
        self,
        *,
        agent: str | None = None,
        project: str | None = None,
        model: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TraceList:
        """One page of LLM calls, newest first; pass its `next_cursor` back as `cursor`
        for the next (None: that was the last page)."""
        return self._call(
            req.traces(
                agent,
                limit,
                project=project,
                model=model,
                status=status,
                since=since,
                until=until,
                cursor=cursor,
            )
        )

    def trace(self, trace_id: int) -> Trace:
        """One LLM call by its id (`ironrt.errors.IronrtError` 404 if there is none)."""
        return self._call(req.get_trace(trace_id))

    # ---- limits -----------------------------------------------------------------------
    # A scope is `global`, `project:NAME`, `agent:REF` or a bare agent REF (id, prefix or
    # name). Each scope's spend is kept when its limits change or are removed.
    def limits(self) -> list[ScopeLimits]:
        """Every budget scope with its limits, spend and calls in flight."""
        return self._call(req.limits()).limits

    def get_limits(self, scope: str) -> ScopeLimits:
        return self._call(req.get_limits(scope))

    def set_limits(
        self,
        scope: str,
        *,
        budget_usd: float | msgspec.UnsetType | None = msgspec.UNSET,
        window: str | msgspec.UnsetType | None = msgspec.UNSET,
        rpm: int | msgspec.UnsetType | None = msgspec.UNSET,
        tpm: int | msgspec.UnsetType | None = msgspec.UNSET,
        max_concurrent: int | msgspec.UnsetType | None = msgspec.UNSET,
        models: Sequence[str] | msgspec.UnsetType | None = msgspec.UNSET,
        pii: PiiMode | msgspec.UnsetType | None = msgspec.UNSET,
        pii_types: PiiTypes | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> ScopeLimits:
        """Set the given limits of `scope` (None clears one; the others are left as they
        are). `window` is a duration like `1h` or `7d`; `models` are glob patterns.

        `pii` and `pii_types` are a floor for every call in the scope: per type, the
        stricter of the agent's action and the scope's wins. `pii_types` takes the forms
        of `start_agent`'s; a type named without an action gets `pii`, else the scope's
        current `pii` (fetched first)."""
        changes = req.given(
            budget_usd=budget_usd,
            window=window,
            rpm=rpm,
            tpm=tpm,
            max_concurrent=max_concurrent,
            models=models,
            pii=pii,
            pii_types=pii_types,
        )
        current = None
        if req.wants_limits_pii(changes):
            current = (self.get_limits(scope)).pii
        return self._call(req.set_limits(scope, changes, current))

    def unset_limits(self, scope: str, *fields: str) -> ScopeLimits:
        """Clear the named limits of `scope` (names as in `LimitsUpdate`: budget_usd,
        window, rpm, tpm, max_concurrent, models)."""
        return self._call(req.set_limits(scope, req.unset_changes(fields)))

    def remove_limits(self, scope: str) -> ScopeLimits:
        """Remove every limit of `scope`; its spend is kept."""
        return self._call(req.remove_limits(scope))

    # ---- lifetime ---------------------------------------------------------------------
    def close(self) -> None:
        """Nothing to release (one connection per request); here for the twins' parity."""
        return None

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
