"""Client calls as requests: the method, path and query of each call, the type its
answer decodes to, and the decoding of answers and errors.

`Runtime` (sync) and `AsyncRuntime` (anyio) describe every request with a `Call` built
here, and decode every answer with `decode`, so the two cannot disagree on a path, a
query string, a default or an error: each twin only moves bytes. Every `Call` is made from
its entry in `ironrt.calls` (the table the daemon routes by and `/v1/openapi.json` is
generated from): its method and answer, its path filled in from the template (each path
parameter quoted as one segment), and only query parameters the entry declares. Nothing
here does I/O.

A call's body is built and checked in `ironrt.client_bodies` (bad arguments fail there,
before anything is sent); its names are re-exported here so that the twins import one
module, and a request and its body cannot come from two places.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast
from urllib.parse import quote, urlencode

import msgspec

from ironrt import calls
from ironrt.calls import DaemonStopping, Operation
from ironrt.client_bodies import (
    START_OPTIONS,
    UPDATE_FIELDS,
    PiiTypes,
    StartOptions,
    checked_project,
    default_python,
    given,
    limits_body,
    pii_types_map,
    refuse_unknown,
    start_body,
    unset_changes,
    update_body,
    wants_pii_mode,
)
from ironrt.errors import InvalidRequest, IronrtError, WaitTimeout, error_for
from ironrt.protocol import (
    LIMIT_FIELDS,
    Agent,
    AgentList,
    AnyEvent,
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
    Version,
)

__all__ = [
    "FOLLOW_RETRIES",
    "START_OPTIONS",
    "UPDATE_FIELDS",
    "VERSION_PATH",
    "WAIT_POLL_S",
    "Call",
    "PiiTypes",
    "StartOptions",
    "agent_path",
    "call",
    "checked_project",
    "daemon_down",
    "deadline",
    "decode",
    "default_python",
    "event_kinds",
    "event_line",
    "events",
    "follow_events",
    "follow_logs",
    "get_agent",
    "get_limits",
    "get_metrics",
    "get_trace",
    "given",
    "health",
    "limits",
    "limits_body",
    "limits_path",
    "list_agents",
    "logs",
    "pii_types_map",
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
    "version",
    "wait_poll",
    "wait_timeout",
    "wants_limits_pii",
    "wants_update_pii",
]

T = TypeVar("T")

#: What `ping` asks: the cheapest answer the daemon gives.
VERSION_PATH = calls.VERSION.path
#: The longest single long poll of `wait`: the daemon accepts up to an hour, but a poll
#: that returns now and then lets a client notice a daemon that went away.
WAIT_POLL_S = 300.0
#: Extra seconds a client allows for the answer of a call that itself takes time (a stop,
#: a long poll), beyond the time the daemon was told it may take.
_SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One control-API request and the type its answer decodes to: a protocol Struct, or
    `str` for an answer that is text (logs). For a followed stream, the type of each line
    (`Event`), or `bytes` for text passed on as it arrives."""

    method: str
    path: str
    answer: type[T]
    body: bytes | None = None
    #: Seconds to wait for the answer when the call itself takes time (a stop, a long
    #: poll); None: the client's own timeout.
    timeout: float | None = None


def call(
    op: Operation[T],
    params: Mapping[str, str] | None = None,
    query: Mapping[str, object] | None = None,
    body: bytes | None = None,
    timeout: float | None = None,
) -> Call[T]:
    """The request for `op`: its path parameters filled in (quoted whole, so a `/` or a
    `:` stays in its segment) and its query (None values left out, flags as `true` /
    `false`). A parameter `op` does not declare is a bug here, refused at once."""
    return Call(op.method, _target(op, params, query), op.answer, body, timeout)


def _target(
    op: Operation[Any], params: Mapping[str, str] | None, query: Mapping[str, object] | None
) -> str:
    params = params or {}
    if sorted(params) != sorted(op.path_params):
        raise TypeError(f"{op.path} takes path parameters {op.path_params}, not {sorted(params)}")
    path = op.path
    for name, value in params.items():
        if not value:
            # `ironrt metrics ''` asked for /v1/agents//metrics: "no such resource".
            raise InvalidRequest(f"`{name}` is empty: {_NAMES.get(name, 'give one')}", field=name)
        path = path.replace("{" + name + "}", quote(value, safe=""))
    pairs: dict[str, str] = {}
    for key, given_value in (query or {}).items():
        op.param(key)  # KeyError: the call takes no such parameter
        if given_value is not None:
            pairs[key] = _flag(given_value) if isinstance(given_value, bool) else str(given_value)
    return f"{path}?{urlencode(pairs)}" if pairs else path


#: What each path parameter names, for the error an empty one gets.
_NAMES = {
    "ref": "name an agent (its id or name)",
    "scope": "name a scope (global, project:NAME or an agent)",
    "id": "give a trace's id",
}


def limits_path(scope: str) -> str:
    """The URL of one scope: quoted whole, so `project:x` or a name with `/` stays one
    path segment. An empty scope would address the list instead, so it is refused."""
    return _target(calls.GET_LIMITS, {"scope": _scope(scope)}, None)


def agent_path(ref: str) -> str:
    """The URL of one agent (`ref`: id, id prefix or name), quoted as one path segment."""
    return _target(calls.GET_AGENT, {"ref": ref}, None)


def _scope(scope: str) -> str:
    if not scope.strip():
        raise InvalidRequest(
            "a scope is `global`, `project:NAME`, `agent:REF` or an agent REF", field="scope"
        )
    return scope


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
    body = start_body(path, args, budget, options, project)
    return call(calls.START_AGENT, body=body)


def list_agents(*, metrics: bool = False) -> Call[AgentList]:
    return call(calls.LIST_AGENTS, query={"metrics": True if metrics else None})


def get_agent(ref: str) -> Call[Agent]:
    return call(calls.GET_AGENT, {"ref": ref})


def get_metrics(ref: str) -> Call[Metrics]:
    return call(calls.AGENT_METRICS, {"ref": ref})


def stop_agent(ref: str, timeout: float) -> Call[Agent]:
    """The daemon waits up to `timeout` for the agent to exit: so does the client, and more."""
    body = msgspec.json.encode(StopRequest(timeout=timeout))
    return call(calls.STOP_AGENT, {"ref": ref}, body=body, timeout=timeout + _SLACK_S)


def restart_agent(ref: str, timeout: float) -> Call[Agent]:
    body = msgspec.json.encode(StopRequest(timeout=timeout))
    return call(calls.RESTART_AGENT, {"ref": ref}, body=body, timeout=timeout + _SLACK_S)


def remove_agent(ref: str, force: bool) -> Call[Agent]:
    return call(calls.REMOVE_AGENT, {"ref": ref}, {"force": force})


def update_agent(
    ref: str, changes: Mapping[str, object], current_pii: str | None = None
) -> Call[Agent]:
    """`current_pii`: the agent's, for types named without an action (`wants_update_pii`)."""
    return call(calls.UPDATE_AGENT, {"ref": ref}, body=update_body(changes, current_pii))


def wants_update_pii(changes: Mapping[str, object]) -> bool:
    """Whether `update_agent` must first fetch the agent's `pii`: `pii_types` names a type
    without an action (`"email"`) and the change gives no `pii` for it."""
    return wants_pii_mode("update_agent", changes, UPDATE_FIELDS)


def wants_limits_pii(changes: Mapping[str, object]) -> bool:
    """As `wants_update_pii`, for `set_limits`: the scope's `pii` floor is fetched."""
    return wants_pii_mode("set_limits", changes, LIMIT_FIELDS)


def deadline(timeout: float | None) -> float | None:
    """When a `wait` of `timeout` seconds gives up (monotonic clock); None: never."""
    return None if timeout is None else time.monotonic() + timeout


def wait_poll(ref: str, until: float | None) -> Call[Agent]:
    """One long poll of `wait`: the daemon answers when the agent has ended or after the
    time left (at most `WAIT_POLL_S`), whichever comes first."""
    left = WAIT_POLL_S if until is None else max(until - time.monotonic(), 0.0)
    step = min(left, WAIT_POLL_S)
    return call(calls.WAIT_AGENT, {"ref": ref}, {"timeout": step}, timeout=step + _SLACK_S)


def wait_timeout(agent: Agent, until: float | None, timeout: float | None) -> WaitTimeout | None:
    """The error for a `wait` whose time is up with `agent` still live, else None."""
    if until is None or time.monotonic() < until:
        return None
    return WaitTimeout(f"agent {agent.id} is still {agent.status.value} after {timeout}s")


def logs(ref: str, tail: int) -> Call[str]:
    """The agent's output (plain text, not JSON): the last `tail` lines."""
    return call(calls.AGENT_LOGS, {"ref": ref}, {"tail": tail})


def follow_logs(ref: str, tail: int) -> Call[bytes]:
    """The last `tail` lines, then what the agent writes next until it ends for good:
    passed on as it arrives."""
    op = calls.AGENT_LOGS
    return Call(op.method, _target(op, {"ref": ref}, {"tail": tail, "follow": True}), bytes)


def _events_query(
    agent: str | None, since: int, limit: int, kinds: Sequence[str], project: str | None
) -> dict[str, object]:
    return {
        "since": since,
        "limit": limit,
        "agent": agent or None,
        "kind": ",".join(kinds) or None,
        "project": checked_project(project),  # a typo would match nothing, silently
    }


def event_kinds(kind: str | Sequence[str] | None) -> tuple[str, ...]:
    """The `kind` filter as a tuple of kinds (one name, a comma list, or several)."""
    if kind is None:
        return ()
    names = [kind] if isinstance(kind, str) else list(kind)
    kinds = tuple(k.strip() for name in names for k in name.split(",") if k.strip())
    if not kinds:  # given, but empty (`--kind ''`): not the filter left out
        raise InvalidRequest("`kind` is empty: name an event kind (or leave the filter out)")
    return kinds


def events(
    agent: str | None,
    since: int,
    limit: int,
    kinds: Sequence[str] = (),
    project: str | None = None,
) -> Call[EventList]:
    """Up to `limit` events after id `since`, oldest first."""
    return call(calls.EVENTS, query=_events_query(agent, since, limit, kinds, project))


def follow_events(
    agent: str | None,
    since: int,
    limit: int,
    kinds: Sequence[str] = (),
    project: str | None = None,
) -> Call[Event]:
    """The NDJSON stream of `events(follow=True)`: without `since`, the newest `limit`
    events; with it, every one after it; then live events, one per line."""
    op = calls.EVENTS
    query = {**_events_query(agent, since, limit, kinds, project), "follow": True}
    return Call(op.method, _target(op, None, query), Event)


#: A followed stream that ends or breaks is opened again (after the last event it gave)
#: this many times in a row before the follower believes the daemon is gone.
FOLLOW_RETRIES = 3


def event_line(line: bytes | str) -> Event | None:
    """One line of the followed stream, as its typed event; None for a blank line."""
    return msgspec.json.decode(line, type=AnyEvent) if line.strip() else None


def usage(
    by: str,
    agent: str | None,
    *,
    since: str | None = None,
    until: str | None = None,
    project: str | None = None,
) -> Call[Usage]:
    """`since`/`until`: ISO 8601 or a duration before now (`24h`), read by the daemon."""
    query = {"by": by, "agent": agent, "since": since, "until": until, "project": project}
    return call(calls.USAGE, query={k: v or None for k, v in query.items()})


def traces(
    agent: str | None,
    limit: int,
    *,
    project: str | None = None,
    model: str | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
) -> Call[TraceList]:
    """One page, newest first; `cursor`: the `next_cursor` of the page before."""
    query: dict[str, object] = {
        "limit": limit,
        "agent": agent or None,
        "project": project or None,
        "model": model or None,
        "status": status or None,
        "since": since or None,
        "until": until or None,
        "cursor": cursor or None,
    }
    return call(calls.TRACES, query=query)


def get_trace(trace_id: int | str) -> Call[Trace]:
    return call(calls.GET_TRACE, {"id": str(trace_id)})


def limits() -> Call[LimitsList]:
    return call(calls.LIST_LIMITS)


def get_limits(scope: str) -> Call[ScopeLimits]:
    return call(calls.GET_LIMITS, {"scope": _scope(scope)})


def set_limits(
    scope: str, changes: Mapping[str, Any], current_pii: str | None = None
) -> Call[ScopeLimits]:
    """Set exactly `changes` on `scope` (see `limits_body`): `unset_limits` too.
    `current_pii`: the scope's floor, for types named without an action."""
    body = limits_body(changes, current_pii)
    return call(calls.SET_LIMITS, {"scope": _scope(scope)}, body=body)


def remove_limits(scope: str) -> Call[ScopeLimits]:
    return call(calls.REMOVE_LIMITS, {"scope": _scope(scope)})


def health() -> Call[Health]:
    return call(calls.HEALTH)


def version() -> Call[Version]:
    return call(calls.VERSION)


def shutdown_daemon(keep_agents: bool) -> Call[DaemonStopping]:
    """Ask the daemon to stop; it answers at once (202) and stops after answering."""
    return call(calls.STOP_DAEMON, query={"keep_agents": keep_agents})


DAEMON_WENT = (
    "the daemon closed the connection before it answered: it stopped, or is stopping "
    "(`ironrt daemon status` tells which)"
)


def daemon_down(home: object) -> str:
    """Why a call found no daemon, and what to do about it."""
    return (
        f"no ironrt daemon is running on {home} "
        "(start one with `ironrt daemon start`, or allow autostart)"
    )


# ---- answers ----------------------------------------------------------------------------
def decode(status: int, body: bytes, type_: type[T]) -> T:
    """The answer as `type_` (`str`: text, as the logs are), or the `ironrt.errors` class
    the daemon's error body names."""
    raise_for_error(status, body)
    if type_ is str:
        return cast(T, body.decode("utf-8", "replace"))
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
        # Not the documented body: the status alone still says what kind of failure it
        # was (a 507 is a StorageError whoever wrote the body).
        raise error_for(
            "", f"daemon answered HTTP {status}: {body[:200]!r}", status=status
        ) from None
    raise error_for(err.code, err.message, err.field, status=status)


def _flag(value: bool) -> str:
    return "true" if value else "false"
