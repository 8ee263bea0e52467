"""The calls of the control API, each declared once: method, path, body, query, answer.

pueue defines its daemon/client protocol in one shared module, and both sides use it; this
is ironrt's. The daemon binds each `Operation` below to its handler (`ironrt.control.api`),
the clients build every request from the same entry (`ironrt.client_requests`), and
`/v1/openapi.json` is generated from this table (`ironrt.control.openapi`): a path, a
query parameter's range or a status written here cannot disagree between the three.

Only data lives here (the protocol's Structs say what the bodies hold); nothing here does
I/O or knows the daemon, so the lightest client can import it.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import msgspec

from ironrt.protocol import (
    Agent,
    AgentList,
    Base,
    Event,
    EventList,
    Health,
    LimitsList,
    LimitsUpdate,
    Metrics,
    ScopeLimits,
    StartRequest,
    StopRequest,
    Trace,
    TraceList,
    UpdateRequest,
    Usage,
    Version,
)

__all__ = [
    "AGENT_LOGS",
    "AGENT_METRICS",
    "CALLS",
    "EVENTS",
    "GET_AGENT",
    "GET_LIMITS",
    "GET_TRACE",
    "HEALTH",
    "LIST_AGENTS",
    "LIST_LIMITS",
    "METRICS",
    "OPENAPI",
    "PATH_PARAMS",
    "REMOVE_AGENT",
    "REMOVE_LIMITS",
    "RESTART_AGENT",
    "SET_LIMITS",
    "START_AGENT",
    "STOP_AGENT",
    "STOP_DAEMON",
    "TRACES",
    "UPDATE_AGENT",
    "USAGE",
    "VERSION",
    "WAIT_AGENT",
    "DaemonStopping",
    "Operation",
    "Query",
    "QueryType",
    "choice",
    "flag",
    "number",
    "text",
]

A = TypeVar("A")

QueryType = Literal["flag", "number", "choice", "text"]


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """One query parameter. Its name means the same on every call that takes it; an absent
    one is its `default`.

    - `flag`: `true`/`false` (also `1`/`0`, `yes`/`no`; empty: false);
    - `number`: a number in `minimum..maximum` (outside: 422; not a number: 400);
    - `choice`: one of `choices` (anything else: 400);
    - `text`: any string; empty is the same as absent.
    """

    name: str
    type: QueryType
    default: float | str | bool | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


def flag(name: str) -> Query:
    return Query(name=name, type="flag", default=False)


def number(name: str, default: float, minimum: float, maximum: float) -> Query:
    return Query(name=name, type="number", default=default, minimum=minimum, maximum=maximum)


def choice(name: str, default: str, choices: tuple[str, ...]) -> Query:
    return Query(name=name, type="choice", default=default, choices=choices)


def text(name: str) -> Query:
    return Query(name=name, type="text")


class DaemonStopping(Base):
    """The answer of `POST /v1/daemon/stop` (202): the daemon stops after sending it."""

    stopping: bool
    keep_agents: bool


class Operation(msgspec.Struct, Generic[A], frozen=True, kw_only=True):
    """One call of the control API.

    `answer` is what a success decodes to: a protocol Struct; `str` for an answer that is
    text, not JSON (logs); `dict` for a JSON document no Struct describes (the OpenAPI
    document). `stream` is what the answer becomes with `?follow=true`: NDJSON, one
    `stream_item` per line, or text as it is written."""

    name: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    #: `{name}` marks a path parameter: one segment, URL-quoted whole by the client.
    path: str
    summary: str
    answer: type[A]
    body: type[Any] | None = None
    query: tuple[Query, ...] = ()
    status: int = 200
    stream: Literal["ndjson", "text"] | None = None
    stream_item: type[Any] | None = None
    #: Also answers as Server-Sent Events when asked with `Accept: text/event-stream`
    #: (`stream_item`s, resumed after the `Last-Event-ID` header).
    sse: bool = False

    def param(self, name: str) -> Query:
        """The query parameter `name` of this call (KeyError: it takes none by that name)."""
        for q in self.query:
            if q.name == name:
                return q
        raise KeyError(f"{self.method} {self.path} takes no query parameter {name!r}")

    @property
    def path_params(self) -> list[str]:
        """The names of the path's `{parameters}`, in order."""
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


#: What each path parameter is (the same on every path that has it).
PATH_PARAMS: dict[str, str] = {
    "ref": "An agent id, a unique id prefix, or a name (live agents first)",
    "scope": "`global`, `project:NAME`, `agent:REF` or a bare agent REF, URL-quoted",
    "id": "A trace's id (a whole number, as `/v1/traces` lists it)",
}

_TIMEOUT_MAX_S = 3600

# ---- the daemon --------------------------------------------------------------------------
HEALTH = Operation(
    name="health",
    method="GET",
    path="/v1/health",
    summary="Daemon health, version, router address, agent counts",
    answer=Health,
)
VERSION = Operation(
    name="version",
    method="GET",
    path="/v1/version",
    summary="Daemon and protocol version",
    answer=Version,
)
OPENAPI = Operation(
    name="openapi",
    method="GET",
    path="/v1/openapi.json",
    summary="This description",
    answer=dict,
)
METRICS = Operation(
    name="metrics",
    method="GET",
    path="/metrics",
    summary="Prometheus metrics, text exposition format 0.0.4 (docs/metrics.md)",
    answer=str,
)

# ---- agents --------------------------------------------------------------------------------
LIST_AGENTS = Operation(
    name="list_agents",
    method="GET",
    path="/v1/agents",
    summary="List agents (metrics: with each one's metrics)",
    answer=AgentList,
    query=(flag("metrics"),),
)
START_AGENT = Operation(
    name="start_agent",
    method="POST",
    path="/v1/agents",
    summary="Start an agent",
    body=StartRequest,
    answer=Agent,
    status=201,
)
GET_AGENT = Operation(
    name="get_agent",
    method="GET",
    path="/v1/agents/{ref}",
    summary="Get an agent by id, id prefix or name",
    answer=Agent,
)
UPDATE_AGENT = Operation(
    name="update_agent",
    method="PATCH",
    path="/v1/agents/{ref}",
    summary="Change budget, PII mode or rate limits of an agent",
    body=UpdateRequest,
    answer=Agent,
)
REMOVE_AGENT = Operation(
    name="remove_agent",
    method="DELETE",
    path="/v1/agents/{ref}",
    summary="Remove an ended agent (force: stop it first)",
    answer=Agent,
    query=(flag("force"), number("timeout", 10.0, 0, _TIMEOUT_MAX_S)),
)
STOP_AGENT = Operation(
    name="stop_agent",
    method="POST",
    path="/v1/agents/{ref}/stop",
    summary="Stop: SIGTERM to the tree, grace, SIGKILL",
    body=StopRequest,
    answer=Agent,
)
RESTART_AGENT = Operation(
    name="restart_agent",
    method="POST",
    path="/v1/agents/{ref}/restart",
    summary="Restart an agent",
    body=StopRequest,
    answer=Agent,
)
WAIT_AGENT = Operation(
    name="wait_agent",
    method="GET",
    path="/v1/agents/{ref}/wait",
    summary="Wait until the agent has ended (long poll)",
    answer=Agent,
    query=(number("timeout", 30.0, 0, _TIMEOUT_MAX_S),),
)
AGENT_METRICS = Operation(
    name="agent_metrics",
    method="GET",
    path="/v1/agents/{ref}/metrics",
    summary="CPU, memory, uptime, LLM usage and spend",
    answer=Metrics,
)
AGENT_LOGS = Operation(
    name="agent_logs",
    method="GET",
    path="/v1/agents/{ref}/logs",
    summary="The agent's stdout/stderr (follow: stream)",
    answer=str,
    query=(number("tail", 100, 0, 1_000_000), flag("follow")),
    stream="text",
)

# ---- what happened ---------------------------------------------------------------------------
EVENTS = Operation(
    name="events",
    method="GET",
    path="/v1/events",
    summary=(
        "Events, oldest first (follow: NDJSON stream; `Accept: text/event-stream`: "
        "Server-Sent Events, resumed after `Last-Event-ID`); `kind` and `project` filter "
        "(`kind` repeated or a comma list)"
    ),
    answer=EventList,
    query=(
        text("agent"),
        number("since", 0, 0, 2**62),
        number("limit", 100, 1, 10_000),
        flag("follow"),
        text("kind"),
        text("project"),
    ),
    stream="ndjson",
    stream_item=Event,
    sse=True,
)
#: `since` / `until`: an ISO 8601 time (no zone: UTC) or a duration before now (`30m`,
#: `24h`, `7d`); `until` is exclusive.
USAGE = Operation(
    name="usage",
    method="GET",
    path="/v1/usage",
    summary=(
        "Calls, tokens and spend grouped by agent, provider, model, project, UTC day or hour, "
        "over [since, until) (ISO 8601 or 24h, 7d ago); refused calls counted apart"
    ),
    answer=Usage,
    query=(
        choice("by", "agent", ("agent", "provider", "model", "project", "day", "hour")),
        text("agent"),
        text("since"),
        text("until"),
        text("project"),
    ),
)
TRACES = Operation(
    name="traces",
    method="GET",
    path="/v1/traces",
    summary=(
        "One row per LLM call, newest first, filtered by agent, project, model, status and "
        "time; paged by `cursor` (the answer's `next_cursor`)"
    ),
    answer=TraceList,
    query=(
        text("agent"),
        number("limit", 50, 1, 10_000),
        text("project"),
        text("model"),
        choice("status", "any", ("any", "ok", "error", "refused")),
        text("since"),
        text("until"),
        text("cursor"),
    ),
)
GET_TRACE = Operation(
    name="get_trace",
    method="GET",
    path="/v1/traces/{id}",
    summary="One LLM call by its id",
    answer=Trace,
)

# ---- limits ------------------------------------------------------------------------------------
LIST_LIMITS = Operation(
    name="list_limits",
    method="GET",
    path="/v1/limits",
    summary="Every budget scope (global, project:NAME, agent:ID): limits, spend, holds",
    answer=LimitsList,
)
GET_LIMITS = Operation(
    name="get_limits",
    method="GET",
    path="/v1/limits/{scope}",
    summary="One scope: global, project:NAME, agent:REF or an agent ref",
    answer=ScopeLimits,
)
SET_LIMITS = Operation(
    name="set_limits",
    method="PUT",
    path="/v1/limits/{scope}",
    summary="Set limits of a scope (absent: unchanged, null: cleared); applied live",
    body=LimitsUpdate,
    answer=ScopeLimits,
)
REMOVE_LIMITS = Operation(
    name="remove_limits",
    method="DELETE",
    path="/v1/limits/{scope}",
    summary="Remove every limit of a scope (its spend is kept)",
    answer=ScopeLimits,
)

# ---- stopping the daemon -------------------------------------------------------------------
STOP_DAEMON = Operation(
    name="stop_daemon",
    method="POST",
    path="/v1/daemon/stop",
    summary="Stop the daemon (keep_agents: leave agents running)",
    answer=DaemonStopping,
    query=(flag("keep_agents"),),
    status=202,
)

#: Every call, in the order the daemon matches paths and the document lists them.
CALLS: tuple[Operation[Any], ...] = (
    HEALTH,
    VERSION,
    OPENAPI,
    METRICS,
    LIST_AGENTS,
    START_AGENT,
    GET_AGENT,
    UPDATE_AGENT,
    REMOVE_AGENT,
    STOP_AGENT,
    RESTART_AGENT,
    WAIT_AGENT,
    AGENT_METRICS,
    AGENT_LOGS,
    EVENTS,
    USAGE,
    TRACES,
    GET_TRACE,
    LIST_LIMITS,
    GET_LIMITS,
    SET_LIMITS,
    REMOVE_LIMITS,
    STOP_DAEMON,
)
