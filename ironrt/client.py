"""The Python client of the daemon: `Runtime` (sync) and `AsyncRuntime` (anyio).

Both speak the control API over the Unix socket with the protocol's Structs and raise the
`ironrt.errors` classes the daemon names in its error bodies. Both start the daemon in the
background when none answers (as the CLI does), unless autostart is off.

The sync twin speaks HTTP through `ironrt.uds` (httptools, no `email`/`ssl` imports): the
CLI is built on it, and a CLI that answers in a blink cannot afford a heavy HTTP stack. The async
twin uses httpx's Unix-socket transport. Request building (`ironrt.client_requests`) and
response decoding (`_decode`) are shared, so the two cannot disagree.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack
from urllib.parse import urlencode

import msgspec

from ironrt import uds
from ironrt.client_requests import StartOptions as StartOptions  # re-exported
from ironrt.client_requests import (
    agent_path,
    checked_project,
    given,
    limits_body,
    limits_path,
    start_body,
    unset_changes,
    update_body,
)
from ironrt.client_requests import default_python as default_python  # re-exported
from ironrt.config import Settings
from ironrt.errors import (
    DaemonUnavailable,
    IronrtError,
    WaitTimeout,
    error_for,
)
from ironrt.protocol import (
    Agent,
    AgentList,
    ErrorResponse,
    Event,
    EventList,
    Health,
    LimitsList,
    Metrics,
    ScopeLimits,
    StopRequest,
    Trace,
    TraceList,
    Usage,
)
from ironrt.uds import Reply

if TYPE_CHECKING:
    import subprocess

T = TypeVar("T")
_AUTOSTART_WAIT_S = 15.0


def _decode(status: int, body: bytes, type_: type[T]) -> T:
    if status >= 400:
        try:
            err = msgspec.json.decode(body, type=ErrorResponse).error
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise IronrtError(f"daemon answered HTTP {status}: {body[:200]!r}") from None
        raise error_for(err.code, err.message, err.field)
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        # A daemon started by an older ironrt still runs after an upgrade: say so, rather
        # than fail with a decoding error.
        raise IronrtError(
            f"unexpected answer from the daemon ({exc}): if it runs an older ironrt, restart "
            "it with `ironrt daemon stop && ironrt daemon start`"
        ) from None


def spawn_daemon(settings: Settings) -> subprocess.Popen[bytes]:
    """Start `python -m ironrt.daemon` detached; it inherits this environment (and so the
    provider keys the user exported), as PM2's daemon does."""
    import subprocess  # only when a daemon must be started: the CLI's start-up stays light

    settings.ensure_home()
    err = open(settings.home / "daemon.err", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "ironrt.daemon"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            cwd=str(settings.home),
            env={**os.environ, "IRONRT_HOME": str(settings.home)},
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
        self.project = checked_project(project)
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
        self.ensure_daemon()
        return uds.request(socket_path, method, path, body, timeout)

    def _down_message(self) -> str:
        return (
            f"no ironrt daemon is running on {self.settings.home} "
            "(start one with `ironrt daemon start`, or allow autostart)"
        )

    def _call(
        self,
        method: str,
        path: str,
        type_: type[T],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> T:
        resp = self._send(method, path, body, self.timeout if timeout is None else timeout)
        try:
            return _decode(resp.status, resp.read(), type_)
        finally:
            resp.close()

    def ping(self) -> bool:
        try:
            reply = uds.request(str(self.settings.socket_path), "GET", "/v1/version", None, 2.0)
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
        """Start the daemon in the background if none answers; return once it does."""
        if self.ping():
            return
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

    # ---- agents -----------------------------------------------------------------------
    def start_agent(
        self, path: str | Sequence[str], args: Sequence[str] = (), **options: Unpack[StartOptions]
    ) -> str:
        """Start an agent (see `StartOptions`); returns its id."""
        body = start_body(path, args, self.budget, options, self.project)
        return self._call("POST", "/v1/agents", Agent, body).id

    def list_agents(self) -> list[Agent]:
        return self._call("GET", "/v1/agents", AgentList).agents

    def list_agents_with_metrics(self) -> list[tuple[Agent, Metrics]]:
        """Every agent with its metrics, in one request (what `ps` and `top` show)."""
        found = self._call("GET", "/v1/agents?metrics=true", AgentList)
        return list(zip(found.agents, found.metrics or [], strict=True))

    def get_agent(self, ref: str) -> Agent:
        return self._call("GET", agent_path(ref), Agent)

    def get_metrics(self, ref: str) -> Metrics:
        return self._call("GET", f"{agent_path(ref)}/metrics", Metrics)

    def stop_agent(self, ref: str, timeout: float = 10.0) -> Agent:
        body = msgspec.json.encode(StopRequest(timeout=timeout))
        return self._call("POST", f"{agent_path(ref)}/stop", Agent, body, timeout=timeout + 30)

    def restart_agent(self, ref: str, timeout: float = 10.0) -> Agent:
        body = msgspec.json.encode(StopRequest(timeout=timeout))
        return self._call("POST", f"{agent_path(ref)}/restart", Agent, body, timeout=timeout + 30)

    def remove_agent(self, ref: str, *, force: bool = False) -> Agent:
        return self._call("DELETE", f"{agent_path(ref)}?force={str(force).lower()}", Agent)

    def update_agent(self, ref: str, **changes: Any) -> Agent:
        return self._call("PATCH", agent_path(ref), Agent, update_body(changes))

    def set_budget(self, ref: str, budget_usd: float) -> Agent:
        return self.update_agent(ref, budget_usd=budget_usd)

    def wait(self, ref: str, timeout: float | None = None) -> Agent:
        """Block until the agent has ended for good; WaitTimeout if it has not by `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 300.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
            agent = self._call(
                "GET",
                f"{agent_path(ref)}/wait?timeout={min(step, 300.0)}",
                Agent,
                timeout=min(step, 300.0) + 30,
            )
            if not agent.status.live:
                return agent
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"agent {agent.id} is still {agent.status.value} after {timeout}s"
                )

    def logs(self, ref: str, tail: int = 100) -> str:
        resp = self._send("GET", f"{agent_path(ref)}/logs?tail={tail}", None, self.timeout)
        try:
            data = resp.read()
        finally:
            resp.close()
        if resp.status >= 400:
            _decode(resp.status, data, bytes)
        return data.decode("utf-8", "replace")

    def follow_logs(self, ref: str, tail: int = 10) -> Iterator[bytes]:
        """Yield the agent's output as it is written, until the agent ends."""
        resp = self._send("GET", f"{agent_path(ref)}/logs?tail={tail}&follow=true", None, None)
        try:
            if resp.status >= 400:
                _decode(resp.status, resp.read(), bytes)
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    return
                yield chunk
        finally:
            resp.close()

    def events(
        self, *, agent: str | None = None, since: int = 0, limit: int = 100, follow: bool = False
    ) -> Iterator[Event]:
        query: dict[str, Any] = {"since": since, "limit": limit}
        if agent:
            query["agent"] = agent
        if not follow:
            yield from self._call("GET", f"/v1/events?{urlencode(query)}", EventList).events
            return
        query["follow"] = "true"
        resp = self._send("GET", f"/v1/events?{urlencode(query)}", None, None)
        try:
            if resp.status >= 400:
                _decode(resp.status, resp.read(), bytes)
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    yield msgspec.json.decode(line, type=Event)
        finally:
            resp.close()

    def usage(self, by: str = "agent", agent: str | None = None) -> Usage:
        query = {"by": by, **({"agent": agent} if agent else {})}
        return self._call("GET", f"/v1/usage?{urlencode(query)}", Usage)

    def traces(self, agent: str | None = None, limit: int = 50) -> list[Trace]:
        query: dict[str, Any] = {"limit": limit, **({"agent": agent} if agent else {})}
        return self._call("GET", f"/v1/traces?{urlencode(query)}", TraceList).traces

    # ---- limits -----------------------------------------------------------------------
    # A scope is `global`, `project:NAME`, `agent:REF` or a bare agent REF (id, prefix or
    # name). Each scope's spend is kept when its limits change or are removed.
    def limits(self) -> list[ScopeLimits]:
        """Every budget scope with its limits, spend and calls in flight."""
        return self._call("GET", "/v1/limits", LimitsList).limits

    def get_limits(self, scope: str) -> ScopeLimits:
        return self._call("GET", limits_path(scope), ScopeLimits)

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
    ) -> ScopeLimits:
        """Set the given limits of `scope` (None clears one; the others are left as they
        are). `window` is a duration like `1h` or `7d`; `models` are glob patterns."""
        body = limits_body(
            given(
                budget_usd=budget_usd,
                window=window,
                rpm=rpm,
                tpm=tpm,
                max_concurrent=max_concurrent,
                models=models,
            )
        )
        return self._call("PUT", limits_path(scope), ScopeLimits, body)

    def unset_limits(self, scope: str, *fields: str) -> ScopeLimits:
        """Clear the named limits of `scope` (names as in `LimitsUpdate`: budget_usd,
        window, rpm, tpm, max_concurrent, models)."""
        body = limits_body(unset_changes(fields))
        return self._call("PUT", limits_path(scope), ScopeLimits, body)

    def remove_limits(self, scope: str) -> ScopeLimits:
        """Remove every limit of `scope`; its spend is kept."""
        return self._call("DELETE", limits_path(scope), ScopeLimits)

    def health(self) -> Health:
        return self._call("GET", "/v1/health", Health)

    def shutdown_daemon(self, *, keep_agents: bool = False, wait: float = 60.0) -> None:
        """Stop the daemon (and its agents unless keep_agents); returns once it is gone."""
        if not self.ping():
            raise DaemonUnavailable(self._down_message())
        self._call("POST", f"/v1/daemon/stop?keep_agents={str(keep_agents).lower()}", dict)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not self.settings.socket_path.exists() or not self.ping():
                return
            time.sleep(0.05)
        raise DaemonUnavailable(f"the daemon did not stop within {wait}s")

    def close(self) -> None:
        return None

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
