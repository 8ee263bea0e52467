"""The messages of the control API, defined once for the daemon, the client and the CLI.

Every body that crosses the Unix socket is one of these Structs; the daemon decodes
requests with them (so bad input is rejected naming the field) and the client decodes
responses with them. JSON field names are the public contract of `--json` and of
docs/api.md: never rename one, only add optional fields.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec

PROTOCOL_VERSION = 1

#: A request body larger than this is refused with 413 before it is read whole.
MAX_BODY_BYTES = 1 << 20


class AgentStatus(str, enum.Enum):
    """Lifecycle of an agent; the legal transitions live in `ironrt.supervisor.states`."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXITED = "exited"
    FAILED = "failed"
    KILLED = "killed"

    @property
    def live(self) -> bool:
        return self in (AgentStatus.STARTING, AgentStatus.RUNNING, AgentStatus.STOPPING)


RestartPolicy = Literal["no", "on-failure", "always"]
OnBudget = Literal["block", "stop"]
PiiMode = Literal["off", "detect", "redact", "block"]


class Base(msgspec.Struct, omit_defaults=False):
    """Answers: a client ignores fields it does not know, so a newer daemon may add some."""


class RequestBody(Base, forbid_unknown_fields=True):
    """Requests: an unknown field is an error, a typo must not be silently ignored."""


class StartRequest(RequestBody):
    command: list[str]
    cwd: str
    env: dict[str, str] = {}
    name: str | None = None
    budget_usd: float | None = None
    restart: RestartPolicy = "no"
    max_restarts: int = 5
    on_budget: OnBudget = "block"
    pii: PiiMode = "detect"
    rpm: int | None = None
    tpm: int | None = None
    allow_unmetered: bool = False
    #: Extra variables layered over `env` (the CLI's `--env K=V`).
    env_overrides: dict[str, str] = {}
    #: Interpreter for a `.py` script: the caller's Python (a virtualenv's, say).
    python: str | None = None

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("`command` must name a program")
        if self.budget_usd is not None and self.budget_usd < 0:
            raise ValueError("`budget_usd` must be >= 0")
        if self.max_restarts < 0:
            raise ValueError("`max_restarts` must be >= 0")
        for field, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and value <= 0:
                raise ValueError(f"`{field}` must be > 0")


class Agent(Base):
    id: str
    name: str
    pid: int | None
    status: AgentStatus
    exit_code: int | None
    signal: int | None
    command: list[str]
    cwd: str
    restart: RestartPolicy
    restarts: int
    max_restarts: int
    budget_usd: float | None
    spent_usd: float
    on_budget: OnBudget
    pii: PiiMode
    rpm: int | None
    tpm: int | None
    allow_unmetered: bool
    created_at: str
    started_at: str | None
    ended_at: str | None
    error: str | None = None


class AgentList(Base):
    agents: list[Agent]
    #: With `?metrics=true`: each agent's metrics, in the same order (one request for `ps`/`top`).
    metrics: list[Metrics] | None = None


class StopRequest(RequestBody):
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.timeout <= 3600:
            raise ValueError("`timeout` must be between 0 and 3600 seconds")


class UpdateRequest(RequestBody):
    """Settings that may change on a running agent. An absent field is left as it is; a
    `null` budget, rpm or tpm removes that limit."""

    budget_usd: float | msgspec.UnsetType | None = msgspec.UNSET
    pii: PiiMode | msgspec.UnsetType = msgspec.UNSET
    on_budget: OnBudget | msgspec.UnsetType = msgspec.UNSET
    rpm: int | msgspec.UnsetType | None = msgspec.UNSET
    tpm: int | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.budget_usd, float) and self.budget_usd < 0:
            raise ValueError("`budget_usd` must be >= 0")
        for field, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if isinstance(value, int) and value <= 0:
                raise ValueError(f"`{field}` must be > 0")


class Metrics(Base):
    id: str
    status: AgentStatus
    pid: int | None
    exit_code: int | None
    cpu_percent: float
    rss_bytes: int
    num_processes: int
    uptime_s: float
    restarts: int
    llm_calls: int
    input_tokens: int
    output_tokens: int
    spent_usd: float
    budget_usd: float | None
    budget_remaining_usd: float | None
    budget_used_percent: float | None
    pii_findings: int
    errors: int
    #: Circuit breaker state of each provider endpoint the router has used ("closed",
    #: "open", "half-open"): shared by all agents, shown with each agent's metrics.
    circuits: dict[str, str] = {}


class Event(Base):
    id: int
    ts: str
    kind: str
    agent_id: str | None
    data: dict[str, Any] = {}


class EventList(Base):
    events: list[Event]


class Trace(Base):
    id: int
    agent_id: str
    provider: str
    model: str
    endpoint: str
    stream: bool
    status_code: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float
    latency_ms: float
    ttfb_ms: float | None
    error: str | None
    started_at: str


class TraceList(Base):
    traces: list[Trace]


class UsageRow(Base):
    key: str
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class Usage(Base):
    group_by: str
    rows: list[UsageRow]
    total_usd: float


class Health(Base):
    ok: bool
    pid: int
    version: str
    protocol: int
    socket: str
    home: str
    router_url: str
    offline: bool
    uptime_s: float
    agents: dict[str, int]
    provider_keys: dict[str, bool]
    circuits: dict[str, str] = {}


class Version(Base):
    version: str
    protocol: int


class ErrorBody(Base):
    """Every 4xx/5xx of the control API: `code` is stable, `message` is for people."""

    code: str
    message: str
    field: str | None = None


class ErrorResponse(Base):
    error: ErrorBody
