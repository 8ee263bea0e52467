"""The messages of the control API, defined once for the daemon, the client and the CLI.

Every body that crosses the Unix socket is one of these Structs; the daemon decodes
requests with them (so bad input is rejected naming the field) and the client decodes
responses with them. JSON field names are the public contract of `--json` and of
docs/api.md: never rename one, only add optional fields.
"""

from __future__ import annotations

import enum
import math
import re
from typing import Annotated, Any, Literal

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

#: The largest budget (USD) and count limit accepted: far above any real use, far below
#: where floats and SQLite integers misbehave.
MAX_USD = 1e9
MAX_COUNT = 1_000_000_000
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_DURATION = re.compile(r"([1-9][0-9]{0,8})(s|m|h|d)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_UPTIME = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,3})?)(ms|s|m|h)?")
_UPTIME_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: A run shorter than this is unstable (PM2's `min_uptime`); longer than a day makes no sense.
MAX_MIN_UPTIME_S = 86400.0
DEFAULT_MIN_UPTIME_S = 5.0
DEFAULT_MAX_RESTARTS = 5
#: Log rotation per agent: each file at most this many bytes, this many rotated files kept.
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_KEEP = 3
MIN_LOG_MAX_BYTES = 1024
MAX_LOG_MAX_BYTES = 1 << 40
MAX_LOG_KEEP = 100
#: Per-agent resource limits (null: none). Memory is the whole tree's RSS; open files and
#: CPU seconds are rlimits of each process (see docs/supervision.md).
MIN_MAX_MEMORY_BYTES = 1 << 20
MAX_MAX_MEMORY_BYTES = 1 << 40
MIN_OPEN_FILES = 16
MAX_OPEN_FILES = 1 << 20
MAX_CPU_SECONDS = 3650 * 86400


def parse_duration(text: str) -> int:
    """Seconds in a window written like `30s`, `10m`, `1h`, `1d`, `7d`, `30d`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"invalid window {text!r}: write a whole number and a unit s, m, h or d (e.g. 1h, 7d)"
        )
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > 3650 * 86400:
        raise ValueError(f"window {text!r} is longer than ten years")
    return seconds


def parse_uptime(text: str) -> float:
    """Seconds in a duration written like `500ms`, `5s`, `2m`, `1h` or plain seconds `5`."""
    match = _UPTIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: a number and a unit ms, s, m or h (500ms, 5s, 2m)"
        )
    seconds = float(match.group(1)) * _UPTIME_UNIT_S[match.group(2) or "s"]
    check_min_uptime(seconds)
    return seconds


def check_min_uptime(seconds: float) -> None:
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_MIN_UPTIME_S:
        raise ValueError(f"`min_uptime_s` must be between 0 and {MAX_MIN_UPTIME_S:.0f} seconds")


def check_log_limits(max_bytes: int | None, keep: int | None) -> None:
    if max_bytes is not None and not MIN_LOG_MAX_BYTES <= max_bytes <= MAX_LOG_MAX_BYTES:
        raise ValueError(
            f"`log_max_bytes` must be between {MIN_LOG_MAX_BYTES} and {MAX_LOG_MAX_BYTES} bytes"
        )
    if keep is not None and not 1 <= keep <= MAX_LOG_KEEP:
        raise ValueError(f"`log_keep` must be between 1 and {MAX_LOG_KEEP}")


_SIZE = re.compile(r"([0-9]{1,13})\s*(b|kb|kib|k|mb|mib|m|gb|gib|g|tb|tib|t)?", re.IGNORECASE)
_SIZE_UNIT = {"b": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def check_resource_limits(
    max_memory_bytes: int | None, max_open_files: int | None, max_cpu_seconds: int | None
) -> None:
    if max_memory_bytes is not None and not (
        MIN_MAX_MEMORY_BYTES <= max_memory_bytes <= MAX_MAX_MEMORY_BYTES
    ):
        raise ValueError("`max_memory_bytes` must be between 1 MiB and 1 TiB (null: no limit)")
    if max_open_files is not None and not MIN_OPEN_FILES <= max_open_files <= MAX_OPEN_FILES:
        raise ValueError(
            f"`max_open_files` must be between {MIN_OPEN_FILES} and {MAX_OPEN_FILES} "
            "(null: no limit)"
        )
    if max_cpu_seconds is not None and not 1 <= max_cpu_seconds <= MAX_CPU_SECONDS:
        raise ValueError(
            f"`max_cpu_seconds` must be between 1 and {MAX_CPU_SECONDS} (ten years; null: no limit)"
        )


def parse_cpu_seconds(text: str) -> int:
    """Seconds of CPU time written as plain seconds (`90`) or a duration (`30s`, `2m`, `1h`,
    `1d`), between 1 s and ten years: `--max-cpu-seconds`'s parser."""
    try:
        plain = text.strip().isascii() and text.strip().isdigit()
        value = int(text) if plain else parse_duration(text)
    except ValueError as exc:
        if "invalid window" not in str(exc):  # well formed, but longer than ten years
            raise ValueError(f"`max_cpu_seconds` {text!r} is longer than ten years") from None
        raise ValueError(
            f"invalid duration {text!r}: seconds (90) or a whole number and a unit s, m, h "
            "or d (30s, 2m, 1h)"
        ) from None
    check_resource_limits(None, None, value)
    return value


def parse_memory(text: str) -> int:
    """Bytes in a memory limit written like `512M`, `2GB` or `1G` (binary units, as
    `parse_size` reads them), between 1 MiB and 1 TiB: `--max-memory`'s parser."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid size {text!r}: a whole number and a unit M or G (512M, 2G)")
    size: int = int(match.group(1)) * 1024 ** _SIZE_UNIT[(match.group(2) or "b").lower()[0]]
    if not MIN_MAX_MEMORY_BYTES <= size <= MAX_MAX_MEMORY_BYTES:
        raise ValueError(f"size {text!r} must be between 1MB and 1TB")
    return size


def parse_size(text: str) -> int:
    """Bytes in a size written like `1MB` (1,048,576: sizes of files are binary, as
    logrotate's and PM2's are), `512KB`, `10MiB`, `2G` or plain bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid size {text!r}: a whole number and a unit KB, MB or GB (10MB)")
    unit = (match.group(2) or "b").lower()[0]
    size: int = int(match.group(1)) * 1024 ** _SIZE_UNIT[unit]
    if not MIN_LOG_MAX_BYTES <= size <= MAX_LOG_MAX_BYTES:
        raise ValueError(f"size {text!r} must be between 1KB and 1TB")
    return size


#: Words the fleet commands give a meaning (`ironrt stop all`): no agent may be named so.
RESERVED_NAMES = frozenset({"all"})


def check_agent_name(name: str) -> None:
    if not name.strip() or len(name) > 128:
        raise ValueError("`name` must be 1 to 128 characters, not only spaces")
    if name in RESERVED_NAMES:
        raise ValueError(f"`name`: {name!r} is reserved (`ironrt stop {name}` means every agent)")


#: More env files than this is a mistake (a glob that matched a folder of logs).
MAX_ENV_FILES = 32


def check_env_files(paths: list[str]) -> None:
    if len(paths) > MAX_ENV_FILES:
        raise ValueError(f"`env_files`: at most {MAX_ENV_FILES} files")
    for path in paths:
        if not path.startswith("/") or len(path) > 4096 or "\0" in path:
            raise ValueError(f"`env_files`: {path[:200]!r} is not an absolute path")


def check_project(name: str) -> None:
    if not _PROJECT.fullmatch(name):
        raise ValueError(
            f"`project`: invalid name {name!r}: 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def check_usd(field: str, value: float) -> None:
    if not math.isfinite(value) or value < 0 or value > MAX_USD:
        raise ValueError(f"`{field}` must be a number of USD between 0 and {MAX_USD:.0f}")


def check_count(field: str, value: int) -> None:
    if not 0 < value <= MAX_COUNT:
        raise ValueError(f"`{field}` must be between 1 and {MAX_COUNT}")


PiiMode = Literal["off", "detect", "redact", "block"]


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
    on_budget: OnBudget | msgspec.UnsetType = msgspec.UNSET
    rpm: Count | msgspec.UnsetType | None = msgspec.UNSET
    tpm: Count | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.budget_usd, float):
            check_usd("budget_usd", self.budget_usd)
        for field, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if isinstance(value, int):
                check_count(field, value)


LIMIT_FIELDS = ("budget_usd", "window", "rpm", "tpm", "max_concurrent", "models")


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

    def __post_init__(self) -> None:
        if isinstance(self.budget_usd, float):
            check_usd("budget_usd", self.budget_usd)
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
    #: None: unknown (a model with no known price, let through because no scope of the
    #: agent has a budget; the tokens are still counted). Sums of spend skip it.
    cost_usd: float | None
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
    #: The sum of the known costs; `unpriced_calls` of the calls have no known price.
    cost_usd: float
    unpriced_calls: int = 0


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
