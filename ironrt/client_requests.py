"""Client calls as requests: the method, path and query of each call, the type its
answer decodes to, and the decoding of answers and errors.

`Runtime` (sync) and `AsyncRuntime` (anyio) describe every request with a `Call` built
here, and decode every answer with `decode`, so the two cannot disagree on a path, a
query string, a default or an error: each twin only moves bytes. Nothing here does I/O.

A call's body is built and checked in `ironrt.client_bodies` (bad arguments fail there,
before anything is sent); its names are re-exported here so that the twins import one
module, and a request and its body cannot come from two places.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode

import msgspec

from ironrt.client_bodies import (
    START_OPTIONS,
    UPDATE_FIELDS,
    StartOptions,
    checked_project,
    default_python,
    given,
    limits_body,
    refuse_unknown,
    start_body,
    unset_changes,
    update_body,
)
from ironrt.errors import InvalidRequest, IronrtError, WaitTimeout, error_for
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
    TraceList,
    Usage,
)

__all__ = [
    "START_OPTIONS",
    "UPDATE_FIELDS",
    "VERSION_PATH",
    "WAIT_POLL_S",
    "Call",
    "StartOptions",
    "agent_path",
    "checked_project",
    "daemon_down",
    "deadline",
    "decode",
    "default_python",
    "event_line",
    "events",
    "events_follow_path",
    "get_agent",
    "get_limits",
    "get_metrics",
    "given",
    "health",
    "limits",
    "limits_body",
    "limits_path",
    "list_agents",
    "logs_path",
    "raise_for_error",
    "refuse_unknown",
    "remove_agent",
    "remove_limits",
    "restart_agent",
    "set_limits",
    "shutdown_daemon",
    "start_agent",
    "start_body",
    "stop_agent",
    "traces",
    "unset_changes",
    "update_agent",
    "update_body",
    "usage",
    "wait_poll",
    "wait_timeout",
]

T = TypeVar("T")

#: What `ping` asks: the cheapest answer the daemon gives.
VERSION_PATH = "/v1/version"
#: The longest single long poll of `wait`: the daemon accepts up to an hour, but a poll
#: that returns now and then lets a client notice a daemon that went away.
WAIT_POLL_S = 300.0
#: Extra seconds a client allows for the answer of a call that itself takes time (a stop,
#: a long poll), beyond the time the daemon was told it may take.
_SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One control-API request and the type its JSON answer decodes to."""

    method: str
    path: str
    answer: type[T]
    body: bytes | None = None
    #: Seconds to wait for the answer when the call itself takes time (a stop, a long
    #: poll); None: the client's own timeout.
    timeout: float | None = None


def limits_path(scope: str) -> str:
    """The URL of one scope: quoted whole, so `project:x` or a name with `/` stays one
    path segment. An empty scope would address the list instead, so it is refused."""
    if not scope.strip():
        raise InvalidRequest(
            "a scope is `global`, `project:NAME`, `agent:REF` or an agent REF", field="scope"
        )
    return f"/v1/limits/{_segment(scope)}"


def agent_path(ref: str) -> str:
    """The URL of one agent (`ref`: id, id prefix or name), quoted as one path segment."""
    return f"/v1/agents/{_segment(ref)}"


# ---- calls: one per client method, so both twins send exactly the same request ----------
def start_agent(
    path: str | Sequence[str],
    args: Sequence[str],
    options: StartOptions,
    *,
    budget: float | None,
    project: str | None,
) -> Call[Agent]:
    """Start an agent; `budget` and `project` are the client's defaults."""
    return Call("POST", "/v1/agents", Agent, start_body(path, args, budget, options, project))


def list_agents(*, metrics: bool = False) -> Call[AgentList]:
    return Call("GET", "/v1/agents?metrics=true" if metrics else "/v1/agents", AgentList)


def get_agent(ref: str) -> Call[Agent]:
    return Call("GET", agent_path(ref), Agent)


def get_metrics(ref: str) -> Call[Metrics]:
    return Call("GET", f"{agent_path(ref)}/metrics", Metrics)


def stop_agent(ref: str, timeout: float) -> Call[Agent]:
    """The daemon waits up to `timeout` for the agent to exit: so does the client, and more."""
    body = msgspec.json.encode(StopRequest(timeout=timeout))
    return Call("POST", f"{agent_path(ref)}/stop", Agent, body, timeout + _SLACK_S)


def restart_agent(ref: str, timeout: float) -> Call[Agent]:
    body = msgspec.json.encode(StopRequest(timeout=timeout))
    return Call("POST", f"{agent_path(ref)}/restart", Agent, body, timeout + _SLACK_S)


def remove_agent(ref: str, force: bool) -> Call[Agent]:
    return Call("DELETE", f"{agent_path(ref)}?force={_flag(force)}", Agent)


def update_agent(ref: str, changes: Mapping[str, object]) -> Call[Agent]:
    return Call("PATCH", agent_path(ref), Agent, update_body(changes))


def deadline(timeout: float | None) -> float | None:
    """When a `wait` of `timeout` seconds gives up (monotonic clock); None: never."""
    return None if timeout is None else time.monotonic() + timeout


def wait_poll(ref: str, until: float | None) -> Call[Agent]:
    """One long poll of `wait`: the daemon answers when the agent has ended or after the
    time left (at most `WAIT_POLL_S`), whichever comes first."""
    left = WAIT_POLL_S if until is None else max(until - time.monotonic(), 0.0)
    step = min(left, WAIT_POLL_S)
    return Call("GET", f"{agent_path(ref)}/wait?timeout={step}", Agent, timeout=step + _SLACK_S)


def wait_timeout(agent: Agent, until: float | None, timeout: float | None) -> WaitTimeout | None:
    """The error for a `wait` whose time is up with `agent` still live, else None."""
    if until is None or time.monotonic() < until:
        return None
    return WaitTimeout(f"agent {agent.id} is still {agent.status.value} after {timeout}s")


def logs_path(ref: str, tail: int, *, follow: bool = False) -> str:
    """The agent's output (plain text, not JSON): the last `tail` lines, then, with
    `follow`, what it writes next until it ends for good."""
    return f"{agent_path(ref)}/logs?tail={tail}" + ("&follow=true" if follow else "")


def _events_query(agent: str | None, since: int, limit: int) -> dict[str, Any]:
    query: dict[str, Any] = {"since": since, "limit": limit}
    if agent:
        query["agent"] = agent
    return query


def events(agent: str | None, since: int, limit: int) -> Call[EventList]:
    """Up to `limit` events after id `since`, oldest first."""
    return Call("GET", f"/v1/events?{urlencode(_events_query(agent, since, limit))}", EventList)


def events_follow_path(agent: str | None, since: int, limit: int) -> str:
    """The NDJSON stream of `events(follow=True)`: the same backlog, then live events."""
    return f"/v1/events?{urlencode({**_events_query(agent, since, limit), 'follow': 'true'})}"


def event_line(line: bytes | str) -> Event | None:
    """One line of the followed stream; None for a blank (keep-alive) line."""
    return msgspec.json.decode(line, type=Event) if line.strip() else None


def usage(by: str, agent: str | None) -> Call[Usage]:
    query = {"by": by, **({"agent": agent} if agent else {})}
    return Call("GET", f"/v1/usage?{urlencode(query)}", Usage)


def traces(agent: str | None, limit: int) -> Call[TraceList]:
    query: dict[str, Any] = {"limit": limit, **({"agent": agent} if agent else {})}
    return Call("GET", f"/v1/traces?{urlencode(query)}", TraceList)


def limits() -> Call[LimitsList]:
    return Call("GET", "/v1/limits", LimitsList)


def get_limits(scope: str) -> Call[ScopeLimits]:
    return Call("GET", limits_path(scope), ScopeLimits)


def set_limits(scope: str, changes: Mapping[str, Any]) -> Call[ScopeLimits]:
    """Set exactly `changes` on `scope` (see `limits_body`): `unset_limits` too."""
    return Call("PUT", limits_path(scope), ScopeLimits, limits_body(changes))


def remove_limits(scope: str) -> Call[ScopeLimits]:
    return Call("DELETE", limits_path(scope), ScopeLimits)


def health() -> Call[Health]:
    return Call("GET", "/v1/health", Health)


def shutdown_daemon(keep_agents: bool) -> Call[dict[str, Any]]:
    """Ask the daemon to stop; it answers at once (202) and stops after answering."""
    return Call("POST", f"/v1/daemon/stop?keep_agents={_flag(keep_agents)}", dict)


def daemon_down(home: object) -> str:
    """Why a call found no daemon, and what to do about it."""
    return (
        f"no ironrt daemon is running on {home} "
        "(start one with `ironrt daemon start`, or allow autostart)"
    )


# ---- answers ----------------------------------------------------------------------------
def decode(status: int, body: bytes, type_: type[T]) -> T:
    """The answer as `type_`, or the `ironrt.errors` class the daemon's error body names."""
    raise_for_error(status, body)
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        # A daemon started by an older ironrt still runs after an upgrade: say so, rather
        # than fail with a decoding error.
        raise IronrtError(
            f"unexpected answer from the daemon ({exc}): if it runs an older ironrt, restart "
            "it with `ironrt daemon stop && ironrt daemon start`"
        ) from None


def raise_for_error(status: int, body: bytes) -> None:
    """Raise what an error answer means; for answers that are not JSON (logs, streams)."""
    if status < 400:
        return
    try:
        err = msgspec.json.decode(body, type=ErrorResponse).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise IronrtError(f"daemon answered HTTP {status}: {body[:200]!r}") from None
    raise error_for(err.code, err.message, err.field)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _segment(value: str) -> str:
    return quote(value, safe="")
