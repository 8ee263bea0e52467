"""The events the daemon publishes, one msgspec Struct per kind, in one tagged union.

Emitters build these (the supervisor, the router's policies, the ledger, the daemon),
the bus stamps them (`id`, `ts`, the agent's `agent_name` and `project`), the store keeps
their fields as JSON, and the API, the CLI and both clients decode them back into the
same classes. On the wire an event is one flat JSON object: `kind` (the class name) next
to `id`, `ts`, `agent_id`, `agent_name`, `project` and the kind's own fields.

Every field has a default: rows stored by older daemons (with fewer fields, or fields
since renamed) still decode, and a newer daemon may add fields an older client ignores.
A field is never renamed or retyped, only added.
"""

from __future__ import annotations

from typing import Any, Union, cast, get_args

import msgspec

__all__ = [
    "BASE_FIELDS",
    "EVENT_KINDS",
    "EVENT_TYPES",
    "AdmissionTimeout",
    "AgentExited",
    "AgentFailed",
    "AgentForceKilled",
    "AgentKilled",
    "AgentMemoryExceeded",
    "AgentPaused",
    "AgentReattached",
    "AgentRemoved",
    "AgentRestarted",
    "AgentRestarting",
    "AgentResumed",
    "AgentResurrected",
    "AgentStarted",
    "AgentStopped",
    "AgentUpdated",
    "AnyEvent",
    "BudgetClamped",
    "BudgetExactCount",
    "BudgetExhausted",
    "BudgetWarning",
    "BudgetWindowReset",
    "CircuitClosed",
    "CircuitHalfOpen",
    "CircuitOpened",
    "CostUpdate",
    "DaemonStarted",
    "DaemonStopped",
    "Event",
    "LimitsChanged",
    "ModelMismatch",
    "ModelRefused",
    "PiiAlert",
    "PiiBlocked",
    "PiiFinding",
    "PriceUnknown",
    "RateLimited",
    "UsageRejected",
    "event_fields",
    "from_row",
]


class Event(msgspec.Struct, tag_field="kind", tag=True, kw_only=True, omit_defaults=False):
    """What every event carries. `kind` is the class name (the union's tag)."""

    #: The event's sequence number (its row id): strictly increasing, `since` and SSE's
    #: `Last-Event-ID` resume after it. 0: not stored (the disk refused it).
    id: int = 0
    #: When it was published (UTC, ISO 8601 with milliseconds).
    ts: str = ""
    agent_id: str | None = None
    #: The agent's name and project when the event was published (None: not an agent's
    #: event, or an agent the daemon no longer knows).
    agent_name: str | None = None
    project: str | None = None

    @property
    def kind(self) -> str:
        return str(type(self).__struct_config__.tag)


# ---- agents: lifecycle ---------------------------------------------------------------------
class AgentStarted(Event):
    pid: int | None = None
    name: str | None = None


class AgentStopped(Event):
    exit_code: int | None = None
    signal: int | None = None
    #: It ended while no daemon watched it (found so at the next start).
    while_daemon_down: bool = False


class AgentExited(Event):
    exit_code: int | None = None
    signal: int | None = None
    #: Why, when ironrt knows better than the exit status (`max_memory`).
    reason: str | None = None
    while_daemon_down: bool = False
    #: Its end was not seen (the daemon was down): the exit status is unknown.
    lost: bool = False


class AgentKilled(Event):
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None


class AgentFailed(Event):
    reason: str = ""


class AgentRestarting(Event):
    attempt: int = 0
    #: Consecutive runs shorter than `--min-uptime` so far.
    unstable: int = 0
    delay_s: float = 0.0
    reason: str | None = None


class AgentRestarted(Event):
    pid: int | None = None
    #: Restarted by a person (`ironrt restart`), not by its restart policy.
    manual: bool = False


class AgentRemoved(Event):
    pass


class AgentUpdated(Event):
    #: The settings changed, by name (`budget_usd`, `pii`, `pii_types`, `on_budget`, ...).
    changes: dict[str, Any] = {}


class AgentPaused(Event):
    scope: str = ""
    reason: str = ""


class AgentResumed(Event):
    pass


class AgentReattached(Event):
    pid: int | None = None


class AgentResurrected(Event):
    pid: int | None = None
    reason: str = ""


class AgentForceKilled(Event):
    #: The grace period it outlived after SIGTERM.
    grace_s: float = 0.0


class AgentMemoryExceeded(Event):
    pid: int | None = None
    rss_bytes: int = 0
    max_memory_bytes: int = 0


# ---- limits and budgets ----------------------------------------------------------------------
class LimitsChanged(Event):
    scope: str = ""
    #: The limits changed, by name (`budget_usd`, `rpm`, `models`, ...; None: removed).
    changes: dict[str, Any] = {}


class _ScopeBooks(Event):
    """A budget scope's books when the event was made."""

    scope: str = ""
    spent_usd: float = 0.0
    held_usd: float = 0.0
    budget_usd: float | None = None
    resets_at: str | None = None


class BudgetWarning(_ScopeBooks):
    threshold_percent: int = 0


class BudgetExhausted(_ScopeBooks):
    threshold_percent: int = 100
    #: Announced by a refused call (which then carries its bounds), or by a pause.
    refused: bool = False
    paused: bool = False
    call_bound_usd: float | None = None
    call_least_usd: float | None = None


class BudgetWindowReset(_ScopeBooks):
    pass


class BudgetClamped(Event):
    max_output_tokens: int = 0
    asked: int | None = None
    bound_usd: float = 0.0


class BudgetExactCount(Event):
    bound: int = 0
    exact: int = 0


class AdmissionTimeout(Event):
    waited_s: float = 0.0


class CostUpdate(Event):
    """An agent's spend, coalesced: at most one per agent every few seconds while it
    spends (never one per call)."""

    #: All-time spend and calls of the agent.
    spent_usd: float = 0.0
    llm_calls: int = 0
    #: Since the agent's previous CostUpdate.
    calls: int = 0
    cost_usd: float = 0.0


# ---- calls -------------------------------------------------------------------------------------
class UsageRejected(Event):
    reason: str = ""
    charged_usd: float | None = None


class ModelMismatch(Event):
    requested: str = ""
    answered: str = ""


class ModelRefused(Event):
    model: str = ""
    scope: str = ""


class PriceUnknown(Event):
    provider: str = ""
    model: str = ""
    message: str = ""


class PiiFinding(msgspec.Struct, kw_only=True):
    type: str = ""
    #: Where in the call (the text slot's path).
    where: str = ""
    count: int = 0


class PiiAlert(Event):
    #: `request` or `response`.
    direction: str = ""
    #: The strongest action taken (`detected` < `redacted` < `blocked`), and per type.
    action: str = ""
    actions: dict[str, str] = {}
    count: int = 0
    types: list[str] = []
    where: list[str] = []
    counts: dict[str, int] = {}
    findings: list[PiiFinding] = []


class PiiBlocked(Event):
    """A call refused for PII (always with a `PiiAlert` saying what was found)."""

    direction: str = "request"
    #: The blocked types found, and how often each type was found.
    types: list[str] = []
    counts: dict[str, int] = {}


class RateLimited(Event):
    #: `rpm` or `tpm`.
    limit: str = ""
    retry_after_s: int = 0
    per_minute: int = 0
    scope: str = ""


class _CircuitChange(Event):
    #: The upstream's circuit, `"<provider>:<base url>"` (`endpoint`: the same, kept).
    circuit: str = ""
    endpoint: str = ""
    #: The state it left (None: it had none yet).
    previous: str | None = None


class CircuitOpened(_CircuitChange):
    retry_after_s: float | None = None


class CircuitHalfOpen(_CircuitChange):
    pass


class CircuitClosed(_CircuitChange):
    pass


# ---- the daemon ------------------------------------------------------------------------------
class DaemonStarted(Event):
    pid: int = 0
    version: str = ""
    router_url: str = ""


class DaemonStopped(Event):
    pid: int = 0
    keep_agents: bool = False


AnyEvent = Union[  # noqa: UP007 (a runtime value: msgspec decodes with it)
    AgentStarted,
    AgentStopped,
    AgentExited,
    AgentKilled,
    AgentFailed,
    AgentRestarting,
    AgentRestarted,
    AgentRemoved,
    AgentUpdated,
    AgentPaused,
    AgentResumed,
    AgentReattached,
    AgentResurrected,
    AgentForceKilled,
    AgentMemoryExceeded,
    LimitsChanged,
    BudgetWarning,
    BudgetExhausted,
    BudgetWindowReset,
    BudgetClamped,
    BudgetExactCount,
    AdmissionTimeout,
    CostUpdate,
    UsageRejected,
    ModelMismatch,
    ModelRefused,
    PriceUnknown,
    PiiAlert,
    PiiBlocked,
    RateLimited,
    CircuitOpened,
    CircuitHalfOpen,
    CircuitClosed,
    DaemonStarted,
    DaemonStopped,
]

#: Every kind by name (the union's tags).
EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in get_args(AnyEvent)}
EVENT_KINDS: tuple[str, ...] = tuple(EVENT_TYPES)

#: The fields every event has (the rest are the kind's own).
BASE_FIELDS = frozenset({"id", "ts", "agent_id", "agent_name", "project"})
#: Kinds whose fields were once flat and are now one `changes` map.
_CHANGES_KINDS = frozenset({"AgentUpdated", "LimitsChanged"})


def event_fields(event: Event) -> dict[str, Any]:
    """The kind's own fields plus `agent_name` and `project`: what the store keeps in its
    `data` column (id, ts, kind and agent_id have their own columns)."""
    fields = msgspec.to_builtins(event)
    for name in ("kind", "id", "ts", "agent_id"):
        fields.pop(name, None)
    return dict(fields)


def from_row(
    kind: str, event_id: int, ts: str, agent_id: str | None, data: dict[str, Any]
) -> AnyEvent | None:
    """A stored row as its typed event; None for a kind this version does not know.

    Rows written before events were typed hold the same field names; the maps that were
    flat (`AgentUpdated`, `LimitsChanged`) are gathered into `changes`. A field whose
    stored value no longer fits its type is left at its default, never a lost event."""
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        import logging  # only here: the CLI and the clients need not import logging

        logging.getLogger("ironrt.events").warning(
            "skipping stored event %d of unknown kind %r", event_id, kind
        )
        return None
    fields = dict(data)
    if kind in _CHANGES_KINDS and "changes" not in fields:
        keep = {"scope"} | BASE_FIELDS
        fields = {
            "changes": {k: v for k, v in fields.items() if k not in keep},
            **{k: v for k, v in fields.items() if k in keep},
        }
    fields.update(id=event_id, ts=ts, agent_id=agent_id)
    try:
        return cast(AnyEvent, msgspec.convert(fields, cls, strict=False))
    except msgspec.ValidationError:
        base = {k: v for k, v in fields.items() if k in BASE_FIELDS}
        known = {}
        for name, value in fields.items():
            if name in BASE_FIELDS or name not in cls.__struct_fields__:
                continue
            try:
                msgspec.convert({**base, name: value}, cls, strict=False)
            except msgspec.ValidationError:
                continue
            known[name] = value
        return cast(AnyEvent, msgspec.convert({**base, **known}, cls, strict=False))
