"""The messages of the control API, defined once for the daemon, the client and the CLI.

Every body that crosses the Unix socket is one of these Structs; the daemon decodes
requests with them (so bad input is rejected naming the field) and the client decodes
responses with them. JSON field names are the public contract of `--json` and of
docs/api.md: never rename one, only add optional fields.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec

# The events, re-exported: `from ironrt.protocol import AgentStarted` works as well.
from ironrt.protocol.events import *  # noqa: F403
from ironrt.protocol.events import AnyEvent
from ironrt.values import (
    DEFAULT_LOG_KEEP,
    DEFAULT_LOG_MAX_BYTES,
    DEFAULT_MAX_RESTARTS,
    DEFAULT_MIN_UPTIME_S,
    MAX_COUNT,
    MAX_CPU_SECONDS,
    MAX_LOG_KEEP,
    MAX_LOG_MAX_BYTES,
    MAX_MAX_MEMORY_BYTES,
    MAX_MIN_UPTIME_S,
    MAX_OPEN_FILES,
    MAX_USD,
    MIN_LOG_MAX_BYTES,
    MIN_MAX_MEMORY_BYTES,
    MIN_OPEN_FILES,
    check_agent_name,
    check_count,
    check_env_files,
    check_log_limits,
    check_min_uptime,
    check_pii_types,
    check_project,
    check_resource_limits,
    check_usd,
    parse_duration,
)

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
    #: SIGSTOPped by `--on-budget pause` while a call waits for budget; still live.
    PAUSED = "paused"

    @property
    def live(self) -> bool:
        return self in (
            AgentStatus.STARTING,
            AgentStatus.RUNNING,
            AgentStatus.STOPPING,
            AgentStatus.PAUSED,
        )


RestartPolicy = Literal["no", "on-failure", "always"]
OnBudget = Literal["block", "pause", "stop"]
#: Why an agent is paused or ended by ironrt: a budget, or a person (`ironrt stop`).
StopReason = Literal["budget", "user"]

PiiMode = Literal["off", "detect", "redact", "block"]
#: "process": a program the daemon started and supervises; "library": an `ironrt.protect`
#: scope of an ordinary Python process, recorded by that process (the daemon only shows it).
AgentKind = Literal["process", "library"]


# ---- ranges, checked where requests are decoded and published in openapi.json -----------
# The `__post_init__` checks below say the same in friendlier words, and also hold for
# requests built in Python (msgspec applies `Meta` only when decoding).
Usd = Annotated[float, msgspec.Meta(ge=0, le=MAX_USD)]
Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)]
Restarts = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
UptimeS = Annotated[float, msgspec.Meta(ge=0, le=MAX_MIN_UPTIME_S)]
LogBytes = Annotated[int, msgspec.Meta(ge=MIN_LOG_MAX_BYTES, le=MAX_LOG_MAX_BYTES)]
LogKeep = Annotated[int, msgspec.Meta(ge=1, le=MAX_LOG_KEEP)]
MemoryBytes = Annotated[int, msgspec.Meta(ge=MIN_MAX_MEMORY_BYTES, le=MAX_MAX_MEMORY_BYTES)]
OpenFiles = Annotated[int, msgspec.Meta(ge=MIN_OPEN_FILES, le=MAX_OPEN_FILES)]
CpuSeconds = Annotated[int, msgspec.Meta(ge=1, le=MAX_CPU_SECONDS)]
AgentName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Seconds3600 = Annotated[float, msgspec.Meta(ge=0, le=3600)]


class Base(msgspec.Struct, omit_defaults=False):
    """Answers: a client ignores fields it does not know, so a newer daemon may add some."""


class RequestBody(Base, forbid_unknown_fields=True):
    """Requests: an unknown field is an error, a typo must not be silently ignored."""


class StartRequest(RequestBody):
    command: list[str]
    cwd: str
    env: dict[str, str] = {}
    name: AgentName | None = None
    budget_usd: Usd | None = None
    restart: RestartPolicy = "no"
    #: Consecutive unstable restarts allowed (runs shorter than `min_uptime_s`); null: no cap.
    max_restarts: Restarts | None = DEFAULT_MAX_RESTARTS
    on_budget: OnBudget = "block"
    pii: PiiMode = "detect"
    #: Per type: `{"EMAIL": "redact", "SECRET": "block", "*": "off"}`; a type not named
    #: follows `*`, else `pii` (null: every type follows `pii`).
    pii_types: dict[str, PiiMode] | None = None
    #: Absolute path of the agent's own `pii.toml`: its entities add to the home's (and
    #: replace those of the same name). Read when the agent starts and when it changes.
    pii_file: str | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    allow_unmetered: bool = False
    #: Extra variables layered over `env` (the CLI's `--env K=V`).
    env_overrides: dict[str, str] = {}
    #: Absolute paths of dotenv files read at each start of the agent, layered over both:
    #: their values are never stored (secrets stay out of the database).
    env_files: list[str] = []
    #: Interpreter for a `.py` script: the caller's Python (a virtualenv's, say).
    python: str | None = None
    #: The project the agent belongs to: its calls must also fit `project:NAME`'s limits.
    project: str | None = None
    #: A run shorter than this is unstable: it counts toward `max_restarts`.
    min_uptime_s: UptimeS = DEFAULT_MIN_UPTIME_S
    #: Log rotation: bytes per file and rotated files kept (null: the daemon's defaults).
    log_max_bytes: LogBytes | None = None
    log_keep: LogKeep | None = None
    #: Restart the agent when its tree's RSS exceeds this (PM2's `max_memory_restart`).
    max_memory_bytes: MemoryBytes | None = None
    #: RLIMIT_NOFILE (soft and hard) and RLIMIT_CPU of each of its processes.
    max_open_files: OpenFiles | None = None
    max_cpu_seconds: CpuSeconds | None = None
    #: Digest of the apps-file entry (`ironrt up`) this agent is started from: a changed
    #: entry has another digest, so `up` knows to restart it with its new spec.
    spec_digest: str | None = None

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("`command` must name a program")
        check_env_files(self.env_files)
        if self.budget_usd is not None:
            check_usd("budget_usd", self.budget_usd)
        if self.max_restarts is not None and not 0 <= self.max_restarts <= MAX_COUNT:
            raise ValueError(f"`max_restarts` must be between 0 and {MAX_COUNT} (null: unlimited)")
        check_min_uptime(self.min_uptime_s)
        check_log_limits(self.log_max_bytes, self.log_keep)
        check_resource_limits(self.max_memory_bytes, self.max_open_files, self.max_cpu_seconds)
        if self.name is not None:
            check_agent_name(self.name)
        if self.spec_digest is not None and not 1 <= len(self.spec_digest) <= 128:
            raise ValueError("`spec_digest` must be 1 to 128 characters")
        for field, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None:
                check_count(field, value)
        if self.project is not None:
            check_project(self.project)
        if self.pii_types is not None:
            self.pii_types = check_pii_types(self.pii_types)
        if self.pii_file is not None and (
            not self.pii_file.startswith("/") or len(self.pii_file) > 4096 or "\0" in self.pii_file
        ):
            raise ValueError(f"`pii_file`: {self.pii_file[:200]!r} is not an absolute path")


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
    #: Restarts over the agent's life (by its policy, by `ironrt restart`, after a reboot).
    restarts: int
    #: Cap on consecutive unstable restarts; null: unlimited.
    max_restarts: int | None
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
    project: str | None = None
    #: Null while the agent runs normally; "budget" when a budget paused or stopped it (the
    #: blocking scope is in its events), "user" after `ironrt stop`.
    stop_reason: StopReason | None = None
    min_uptime_s: float = DEFAULT_MIN_UPTIME_S
    #: Restarts in a row after runs shorter than `min_uptime_s`; a longer run resets it.
    unstable_restarts: int = 0
    #: It ended while no daemon watched it (a reboot, a killed daemon): exit status unknown.
    lost: bool = False
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    log_keep: int = DEFAULT_LOG_KEEP
    spec_digest: str | None = None
    #: Ended, and its restart policy will start it again (it waits out the backoff).
    restarting: bool = False
    #: The `--env-file`s read at each start (paths only: their values are not stored).
    env_files: list[str] = []
    #: Resource limits (null: none); see `StartRequest`.
    max_memory_bytes: int | None = None
    max_open_files: int | None = None
    max_cpu_seconds: int | None = None
    kind: AgentKind = "process"
    pii_types: dict[str, PiiMode] | None = None
    pii_file: str | None = None


class AgentList(Base):
    agents: list[Agent]
    #: With `?metrics=true`: each agent's metrics, in the same order (one request for `ps`/`top`).
    metrics: list[Metrics] | None = None


class StopRequest(RequestBody):
    timeout: Seconds3600 = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.timeout <= 3600:
            raise ValueError("`timeout` must be between 0 and 3600 seconds")


class UpdateRequest(RequestBody):
    """Settings that may change on a running agent. An absent field is left as it is; a
    `null` budget, rpm or tpm removes that limit."""

    budget_usd: Usd | msgspec.UnsetType | None = msgspec.UNSET
    pii: PiiMode | msgspec.UnsetType = msgspec.UNSET
    pii_types: dict[str, PiiMode] | msgspec.UnsetType | None = msgspec.UNSET
    on_budget: OnBudget | msgspec.UnsetType = msgspec.UNSET
    rpm: Count | msgspec.UnsetType | None = msgspec.UNSET
    tpm: Count | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.budget_usd, float):
            check_usd("budget_usd", self.budget_usd)
        for field, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if isinstance(value, int):
                check_count(field, value)
        if isinstance(self.pii_types, dict):
            self.pii_types = check_pii_types(self.pii_types)


LIMIT_FIELDS = (
    "budget_usd", "window", "rpm", "tpm", "max_concurrent", "models", "pii", "pii_types",
)  # fmt: skip


class ScopeLimits(Base):
    """One budget scope (`global`, `project:NAME`, `agent:ID`) with its limits and books.

    `spent_usd` is the settled spend of the current window (of all time without one),
    `held_usd` what calls in flight have reserved. `window` is the duration as written
    (`"1h"`), `resets_at` when the window's spend next returns to 0.
    """

    scope: str
    budget_usd: float | None
    spent_usd: float
    held_usd: float
    window: str | None
    resets_at: str | None
    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    models: list[str] | None
    #: Calls admitted and not yet settled, and calls waiting for admission.
    in_flight: int = 0
    waiting: int = 0
    #: PII handling every call in the scope gets at least (null: no floor); per type as
    #: an agent's `pii_types`. The stricter of the agent's and its scopes' wins per type.
    pii: PiiMode | None = None
    pii_types: dict[str, PiiMode] | None = None
    #: A scope shared by the daemons of one `IRONRT_LEDGER_URL` (`project:*`, `global`):
    #: then `spent_usd` is the settled spend of all of them (as of this daemon's last sync,
    #: plus its own since), `own_spent_usd` this daemon's part, `leased_usd` what its lease
    #: still lets it spend (calls in flight included) until `lease_expires_at`,
    #: `others_held_usd` the other daemons' unspent leases, `ledger` whether PostgreSQL
    #: answered the last sync (`ok`, `unavailable`).
    shared: bool = False
    own_spent_usd: float | None = None
    leased_usd: float | None = None
    lease_expires_at: str | None = None
    others_held_usd: float | None = None
    daemons: int | None = None
    ledger: str | None = None


class LimitsList(Base):
    limits: list[ScopeLimits]


class LimitsUpdate(RequestBody):
    """`PUT /v1/limits/{scope}`: the given fields are set, `null` clears one, an absent one
    is left as it is."""

    budget_usd: Usd | msgspec.UnsetType | None = msgspec.UNSET
    window: str | msgspec.UnsetType | None = msgspec.UNSET
    rpm: Count | msgspec.UnsetType | None = msgspec.UNSET
    tpm: Count | msgspec.UnsetType | None = msgspec.UNSET
    max_concurrent: Count | msgspec.UnsetType | None = msgspec.UNSET
    models: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    pii: PiiMode | msgspec.UnsetType | None = msgspec.UNSET
    pii_types: dict[str, PiiMode] | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.budget_usd, float):
            check_usd("budget_usd", self.budget_usd)
        if isinstance(self.pii_types, dict):
            self.pii_types = check_pii_types(self.pii_types)
        if isinstance(self.window, str):
            try:
                parse_duration(self.window)
            except ValueError as exc:
                raise ValueError(f"`window`: {exc}") from None
        for field in ("rpm", "tpm", "max_concurrent"):
            value = getattr(self, field)
            if isinstance(value, int):
                check_count(field, value)
        if isinstance(self.models, list):
            if not self.models:
                raise ValueError("`models` must list at least one pattern (null clears it)")
            for pattern in self.models:
                if not pattern.strip() or len(pattern) > 200:
                    raise ValueError(f"`models`: invalid pattern {pattern!r}")

    def given(self) -> dict[str, Any]:
        """The fields this update sets or clears (None = clear)."""
        return {
            name: getattr(self, name)
            for name in LIMIT_FIELDS
            if getattr(self, name) is not msgspec.UNSET
        }


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


class EventList(Base):
    events: list[AnyEvent]


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
    #: None: unknown (a model with no known price, let through because no scope of the
    #: agent has a budget; the tokens are still counted). Sums of spend skip it.
    cost_usd: float | None
    latency_ms: float
    ttfb_ms: float | None
    error: str | None
    #: When the call reached the router (UTC, ISO 8601 with milliseconds).
    started_at: str
    #: The agent's name and project when it made the call (kept: the agent may be renamed
    #: or removed, its calls still group by what it was).
    agent_name: str = ""
    project: str | None = None
    #: The agent process that made the call (None: not known, e.g. before schema v9).
    pid: int | None = None
    #: The model the provider says answered ("" when it said nothing or never answered).
    response_model: str = ""
    #: Set when ironrt refused the call before any provider answered (a refused call
    #: reached no provider): the refusal's code ("budget_exhausted", "rate_limited",
    #: "pii_blocked", "circuit_open", "model_not_allowed", ...).
    refusal: str | None = None
    #: The time the router itself added (latency minus the time spent waiting on the
    #: upstream), in ms; None when no upstream was asked.
    overhead_ms: float | None = None


class TraceList(Base):
    """One page of traces, newest first (by id: the order they were recorded)."""

    traces: list[Trace]
    #: Pass back as `?cursor=` for the next page; None: this was the last page.
    next_cursor: str | None = None


class UsageRow(Base):
    """The calls of one group: an agent (`key` its id, `name` its name), a project (`key`
    "" for calls of no project), a provider, a model, or a UTC day or hour (`key` the
    bucket's start, `2026-11-30T09:00:00Z`)."""

    key: str
    #: Calls that reached a provider (`refused_calls` are counted apart).
    llm_calls: int
    input_tokens: int
    output_tokens: int
    #: The sum of the known costs; `unpriced_calls` of the calls have no known price.
    cost_usd: float
    unpriced_calls: int = 0
    #: Calls ironrt refused before any provider answered (budget, rate limit, PII, ...).
    refused_calls: int = 0
    #: Calls that reached a provider and failed (HTTP status >= 400, or an error).
    errors: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    #: Grouped by agent: the agent's name at its calls (None for other groupings).
    name: str | None = None


class Usage(Base):
    group_by: str
    rows: list[UsageRow]
    total_usd: float
    #: The time range summed, as asked (UTC, ISO 8601 with ms; None: unbounded).
    since: str | None = None
    until: str | None = None
    #: Over all rows: calls that reached a provider, and calls refused.
    llm_calls: int = 0
    refused_calls: int = 0


class LedgerStatus(Base):
    """The fleet ledger's connection (`IRONRT_LEDGER_URL`), as `health` and `doctor` show it.

    `url` never carries the password; `state` is `ok` (the last round answered) or
    `unavailable` (`error` says why: calls of shared scopes go on inside their leases,
    then get 503 `ledger_unavailable`).
    """

    url: str
    state: str
    daemon_id: str
    lease_ttl_s: float
    error: str | None = None
    schema: int | None = None
    synced_at: str | None = None
    #: Lease transactions this daemon has made since it started, and why (`want`: calls
    #: waited for more; `renew`, `report`, `hand_back`, `first`, `reconcile`).
    syncs: int = 0
    syncs_by_reason: dict[str, int] = {}
    shared_scopes: list[str] = []


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
    #: Control Panel telemetry: "enabled", "disabled" (after 3 failed attempts; re-probed
    #: every IRONRT_TELEMETRY_REPROBE) or "off" (not configured).
    telemetry: str = "off"
    #: The fleet ledger, when `IRONRT_LEDGER_URL` is set.
    ledger: LedgerStatus | None = None


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
