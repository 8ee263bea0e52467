"""Where ironrt keeps its state and how it is configured: every setting, read in one place.

Every setting is an environment variable, each also settable in `$IRONRT_HOME/config.toml`
(the environment wins; an empty value counts as unset). `Settings.load` reads them all,
checks them against the table of settings and hands typed values to the code that uses
them: no other module reads `os.environ` for a setting. The CLI and the daemon load the same
settings, so the CLI finds the socket the daemon listens on without being told, and a bad
setting stops either of them with the same one line.

Why so strict. A setting that is wrong does not fail where it is read but later, and far
away: `IRONRT_SAMPLE_INTERVAL=0` spun the daemon at 99 % CPU, a typo in config.toml
(`routr_port`) silently left the port at its default. So every value has a range, checked
at start-up, and a key in config.toml that is no setting is an error with a "did you
mean". The environment is another matter: agents and tools carry `IRONRT_AGENT_ID`,
`IRONRT_ROUTER_URL` and the like, so an unknown `IRONRT_*` variable is left alone.

The table (each setting, its kind of value and range) is `ironrt.settings_table`, the
contract alone; this module reads the environment and config.toml against it and builds
`Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from ironrt.errors import ConfigError as ConfigError  # defined there, re-exported
from ironrt.settings_table import (
    BY_NAME,
    PREFIX,
    PROVIDER_TABLE,
    PROVIDERS,
    SETTINGS,
    AlertWebhook,
    Flag,
    Number,
    ProviderEntry,
    ProviderTable,
    Url,
    configured_entry,
    find,
    register_provider,
)
from ironrt.toml_files import load_toml
from ironrt.values import (
    DEFAULT_LOG_KEEP,
    DEFAULT_LOG_MAX_BYTES,
    DEFAULT_PII_RECALL_BYTES,
    DEFAULT_PII_REGIONS,
)

__all__ = [
    "BY_NAME",
    "DEFAULT_ROUTER_PORT",
    "PROVIDERS",
    "RELIABILITY_FIELDS",
    "SETTINGS",
    "SETTINGS_FIELDS",
    "ConfigError",
    "Number",
    "ReliabilitySettings",
    "Settings",
    "Timeouts",
    "default_home",
    "read",
    "read_file",
    "read_providers",
]

DEFAULT_ROUTER_PORT = 8741


# ---- typed groups handed to the router -----------------------------------------------------


def _checked(name: str, label: str, value: float) -> None:
    """Programmatic construction (tests, library code) gets the same ranges as the file."""
    kind = BY_NAME[name].kind
    assert isinstance(kind, Number)
    try:
        kind.check(value)
    except ValueError:
        raise ConfigError(f"{label} must be {kind.accepts}, got {value!r}") from None


class Timeouts(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The two timeouts of one provider, as the forwarder gives them to its HTTP client."""

    connect_s: float
    read_s: float

    def __post_init__(self) -> None:
        _checked("IRONRT_CONNECT_TIMEOUT", "connect_s", self.connect_s)
        _checked("IRONRT_READ_TIMEOUT", "read_s", self.read_s)


#: ReliabilitySettings field ← the setting that sets it.
RELIABILITY_FIELDS: dict[str, str] = {
    "fail_max": "IRONRT_BREAKER_FAIL_MAX",
    "reset_timeout_s": "IRONRT_BREAKER_RESET_S",
    "max_attempts": "IRONRT_RETRY_MAX_ATTEMPTS",
    "backoff_initial_s": "IRONRT_RETRY_BACKOFF_INITIAL_S",
    "backoff_max_s": "IRONRT_RETRY_BACKOFF_MAX_S",
    "retry_after_cap_s": "IRONRT_RETRY_AFTER_CAP_S",
    "deadline_s": "IRONRT_RETRY_DEADLINE_S",
    "connect_timeout_s": "IRONRT_CONNECT_TIMEOUT",
    "read_timeout_s": "IRONRT_READ_TIMEOUT",
}


class ReliabilitySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Breaker, retry and timeout settings: one object the daemon builds once and hands to
    the breaker and retry policies and to the forwarder (the only place that sleeps and
    sets timeouts). The defaults of the timeouts are the official SDKs' (5 s connect, 600 s
    read), so routing an agent through ironrt never cuts a slow reasoning call the SDK
    alone would have waited for."""

    #: Consecutive upstream failures that open a circuit.
    fail_max: int = 5
    #: How long an open circuit refuses before a probe.
    reset_timeout_s: float = 30.0
    #: Tries per call, the first included; 1 leaves retries to the SDK.
    max_attempts: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    #: The most of an upstream Retry-After the router waits.
    retry_after_cap_s: float = 20.0
    #: No retry may start later than this after the call began.
    deadline_s: float = 60.0
    connect_timeout_s: float = 5.0
    #: Longest silence from the upstream, also between two chunks of a stream.
    read_timeout_s: float = 600.0
    #: Per provider overrides of the two timeouts, keyed by the adapter's name.
    provider_timeouts: dict[str, Timeouts] = {}

    def __post_init__(self) -> None:
        for name, setting in RELIABILITY_FIELDS.items():
            _checked(setting, name, getattr(self, name))
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(
                f"backoff_max_s ({self.backoff_max_s:g}) must be >= backoff_initial_s "
                f"({self.backoff_initial_s:g})"
            )

    def timeouts(self, provider: str) -> Timeouts:
        """The connect and read timeouts for calls to `provider`."""
        override = self.provider_timeouts.get(provider)
        if override is not None:
            return override
        return Timeouts(self.connect_timeout_s, self.read_timeout_s)


#: Settings field ← the setting that sets it (IRONRT_HOME and the reliability group aside).
SETTINGS_FIELDS: dict[str, str] = {
    "router_host": "IRONRT_ROUTER_HOST",
    "router_port": "IRONRT_ROUTER_PORT",
    "offline": "IRONRT_OFFLINE",
    "no_autostart": "IRONRT_NO_AUTOSTART",
    "log_max_bytes": "IRONRT_LOG_MAX_SIZE",
    "log_keep": "IRONRT_LOG_KEEP",
    "restart_backoff": "IRONRT_RESTART_BACKOFF",
    "sample_interval": "IRONRT_SAMPLE_INTERVAL",
    "admission_timeout": "IRONRT_ADMISSION_TIMEOUT",
    "max_connections": "IRONRT_MAX_CONNECTIONS",
    "max_connections_per_peer": "IRONRT_MAX_CONNECTIONS_PER_PEER",
    "header_timeout": "IRONRT_HEADER_TIMEOUT",
    "body_timeout": "IRONRT_BODY_TIMEOUT",
    "keepalive_timeout": "IRONRT_KEEPALIVE_TIMEOUT",
    "event_loop": "IRONRT_EVENT_LOOP",
    "pii_regions": "IRONRT_PII_REGIONS",
    "pii_private_ips": "IRONRT_PII_PRIVATE_IPS",
    "pii_recall_size": "IRONRT_PII_RECALL_SIZE",
    "trace_retention_s": "IRONRT_TRACE_RETENTION",
    "otlp_endpoint": "IRONRT_OTLP_ENDPOINT",
    "metrics_addr": "IRONRT_METRICS_ADDR",
    "metrics_agent_ttl": "IRONRT_METRICS_AGENT_TTL",
    "alert_webhooks": "IRONRT_ALERT_WEBHOOKS",
    "telemetry_url": "IRONRT_TELEMETRY_URL",
    "telemetry_token": "IRONRT_TELEMETRY_TOKEN",
    "telemetry_reprobe": "IRONRT_TELEMETRY_REPROBE",
    "telemetry_queue_max": "IRONRT_TELEMETRY_QUEUE_MAX",
    "ledger_url": "IRONRT_LEDGER_URL",
    "lease_ttl": "IRONRT_LEASE_TTL",
    "ledger_poll": "IRONRT_LEDGER_POLL",
}


# ---- reading ---------------------------------------------------------------------------


def default_home(environ: Mapping[str, str]) -> Path:
    if environ.get("IRONRT_HOME", "").strip():
        return Path(environ["IRONRT_HOME"]).expanduser()
    state = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state).expanduser() / "ironrt"


def _unset(raw: object) -> bool:
    return isinstance(raw, str) and raw.strip() == ""


def _suggest(key: str) -> str:
    """` (did you mean 'router_port'?)`, spelled the way the user spells keys, or ''."""
    import difflib  # only on the error path: the CLI's start-up stays light

    word = key.upper()
    full = word.startswith(PREFIX)
    names = [s.name if full else s.key.upper() for s in SETTINGS if s.in_file]
    found = difflib.get_close_matches(word, names, n=1)
    if not found:
        return ""
    guess = found[0].lower() if key == key.lower() else found[0]
    return f" (did you mean {guess!r}?)"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return load_toml(path)
    except (OSError, ValueError) as exc:  # ValueError: not TOML, or not UTF-8
        raise ConfigError(f"cannot read {path}: {exc}") from None


def read_file(path: Path) -> dict[str, object]:
    """config.toml's settings by their variable's name; unknown keys are an error."""
    raw = _read_toml(path)
    values: dict[str, object] = {}
    _alert_tables(raw, path)
    for key, value in raw.items():
        setting = find(key)
        if setting is None:
            raise ConfigError(f"unknown setting {key!r} in {path}{_suggest(key)}")
        if not setting.in_file:
            raise ConfigError(
                f"{setting.name} cannot be set in {path}: the file is found through it "
                "(set it in the environment, or use --home)"
            )
        if setting.name in values:
            raise ConfigError(f"{setting.name} is set twice in {path}")
        values[setting.name] = value
    return values


def read(
    environ: Mapping[str, str], file_values: Mapping[str, object], where: Path
) -> dict[str, Any]:
    """Every setting that is set, parsed by its kind: the environment over the file. Unset
    ones are absent (their default is the field's)."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw: object = environ.get(setting.name)
        origin = ""
        if raw is None or _unset(raw):
            raw = file_values.get(setting.name)
            origin = f" (in {where})"
        if raw is None or _unset(raw):
            continue
        try:
            values[setting.name] = setting.kind.parse(raw)
        except ValueError as exc:
            raise ConfigError(
                f"{setting.name}{origin} must be {setting.kind.accepts}, "
                f"got {_shown(setting.kind, raw, exc)}"
            ) from None
    return values


def read_providers(path: Path) -> list[ProviderEntry]:
    """providers.toml's `[providers.NAME]` tables as provider entries (see
    `settings_table.ProviderTable`); a key that is none of a table's is an error."""
    raw = _read_toml(path)
    tables = raw.pop("providers", {})
    if raw or not isinstance(tables, dict):
        what = f"key {next(iter(raw))!r}" if raw else "'providers'"
        raise ConfigError(f"unexpected {what} in {path}: it holds [providers.NAME] tables")
    entries = []
    for name, table in tables.items():
        where = f"[providers.{name}] in {path}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        for key in table:
            if key not in ProviderTable.__struct_fields__:
                import difflib  # only on the error path

                close = difflib.get_close_matches(key, ProviderTable.__struct_fields__, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown key {key!r} in {where}{hint}")
        try:
            entries.append(configured_entry(name, msgspec.convert(table, ProviderTable)))
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return entries


def _base_urls(environ: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, str]:
    """Each known provider's configured upstream: a setting for the built-in providers, the
    variable its entry names for the others (a bad URL stops the start, naming it)."""
    urls: dict[str, str] = {}
    for entry in PROVIDER_TABLE.values():
        name = entry.base_url_env
        if name in BY_NAME:
            value = values.get(name)
        elif environ.get(name, "").strip():
            try:
                value = Url().parse(environ[name])
            except ValueError:
                raise ConfigError(
                    f"{name} (the {entry.name} upstream) must be {Url().accepts}, "
                    f"got {environ[name]!r}"
                ) from None
        else:
            value = None
        if value:
            urls[entry.name] = value
    return urls


def _reliability(values: Mapping[str, Any]) -> ReliabilitySettings:
    given = {f: values[name] for f, name in RELIABILITY_FIELDS.items() if name in values}
    defaults = ReliabilitySettings()
    initial = given.get("backoff_initial_s", defaults.backoff_initial_s)
    ceiling = given.get("backoff_max_s", defaults.backoff_max_s)
    if ceiling < initial:
        raise ConfigError(
            f"IRONRT_RETRY_BACKOFF_MAX_S ({ceiling:g}) must be >= "
            f"IRONRT_RETRY_BACKOFF_INITIAL_S ({initial:g})"
        )
    overrides: dict[str, Timeouts] = {}
    for provider in PROVIDERS:
        connect = values.get(f"IRONRT_{provider.upper()}_CONNECT_TIMEOUT")
        read_s = values.get(f"IRONRT_{provider.upper()}_READ_TIMEOUT")
        if connect is not None or read_s is not None:
            overrides[provider] = Timeouts(
                connect
                if connect is not None
                else given.get("connect_timeout_s", defaults.connect_timeout_s),
                read_s
                if read_s is not None
                else given.get("read_timeout_s", defaults.read_timeout_s),
            )
    return ReliabilitySettings(**given, provider_timeouts=overrides)


def _alert_tables(raw: dict[str, Any], path: Path) -> None:
    """config.toml's `[[alerts.webhooks]]` tables become the value of
    IRONRT_ALERT_WEBHOOKS (in place), which `Webhooks` reads and checks."""
    if "alerts" not in raw:
        return
    alerts = raw.pop("alerts")
    if not isinstance(alerts, dict) or set(alerts) - {"webhooks"}:
        extra = sorted(set(alerts) - {"webhooks"}) if isinstance(alerts, dict) else []
        what = f"unknown key {extra[0]!r} in [alerts]" if extra else "[alerts] must be a table"
        raise ConfigError(f"{what} in {path}: it holds [[alerts.webhooks]] tables")
    if any(find(key) is BY_NAME["IRONRT_ALERT_WEBHOOKS"] for key in raw):
        raise ConfigError(f"IRONRT_ALERT_WEBHOOKS is set twice in {path}")
    raw["IRONRT_ALERT_WEBHOOKS"] = alerts.get("webhooks", [])


def _shown(kind: object, raw: object, why: ValueError) -> str:
    """The bad value as an error shows it: the kind decides for a secret or a URL list."""
    shown = getattr(kind, "shown", None)
    return str(shown(raw, why)) if callable(shown) else repr(raw)


def _check_telemetry(values: Mapping[str, Any]) -> None:
    """The bearer token goes with every batch: none is a mistake, and over plain http it
    would cross the network readable, so http:// is for loopback only."""
    url = values.get("IRONRT_TELEMETRY_URL")
    if url is None:
        return
    if not values.get("IRONRT_TELEMETRY_TOKEN"):
        raise ConfigError("IRONRT_TELEMETRY_URL is set but IRONRT_TELEMETRY_TOKEN is not")
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if url.startswith("http://") and host not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError(
            "IRONRT_TELEMETRY_URL must be https:// (http:// only on loopback): the token "
            "would cross the network in clear"
        )


#: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT's values beyond a boolean (the newer
#: conventions name where content goes: ironrt puts it on spans or nowhere).
_CAPTURE_WORDS = {"span_only": True, "span_and_event": True, "no_content": False}


def _otel(environ: Mapping[str, str]) -> dict[str, Any]:
    """The standard OpenTelemetry variables ironrt itself acts on (the SDK reads the rest:
    headers, timeouts, batching), checked like settings so a typo stops the start."""
    out: dict[str, Any] = {}
    name = "OTEL_EXPORTER_OTLP_ENDPOINT"
    if environ.get(name, "").strip():
        try:
            out["otel_endpoint"] = Url().parse(environ[name])
        except ValueError:
            raise ConfigError(f"{name} must be {Url().accepts}, got {environ[name]!r}") from None
    name = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
    raw = environ.get(name, "").strip()
    if raw:
        word = _CAPTURE_WORDS.get(raw.lower())
        if word is None:
            try:
                word = Flag().parse(raw)
            except ValueError:
                raise ConfigError(
                    f"{name} must be {Flag().accepts} or SPAN_ONLY/NO_CONTENT, got {raw!r}"
                ) from None
        out["otel_capture_content"] = word
    return out


class Settings(msgspec.Struct, frozen=True):
    """Every setting, typed and checked; built by `load`, handed to whoever needs a value
    (the supervisor's intervals, the router's timeouts, the client's autostart).

    A Struct, not a dataclass: the dataclass' generated methods for ~30 fields took ~5 ms
    of every start (the CLI's and the daemon's), a Struct is made in C."""

    home: Path
    router_host: str = "127.0.0.1"
    #: None: not configured, so the router takes 8741, or a free port if another home's
    #: daemon holds it (kept for this home). 0: a free port, kept for this home.
    router_port: int | None = None
    #: Upstream base URLs set for providers (by name); the others use their entry's default.
    base_urls: dict[str, str] = msgspec.field(default_factory=dict)
    offline: bool = False
    no_autostart: bool = False
    #: Default log rotation of agents started without their own (`--log-max-size/--log-keep`).
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    log_keep: int = DEFAULT_LOG_KEEP
    #: First delay before restarting an agent (doubled per unstable restart, capped at 60 s).
    restart_backoff: float = 0.5
    #: Seconds between two CPU/memory samples of the agents' process trees.
    sample_interval: float = 1.0
    #: Longest a call waits for budget held by calls in flight before a 429.
    admission_timeout: float = 60.0
    #: The router's connections: in total and per client address (over a cap, the oldest
    #: idle connection is closed to make room; see ironrt.connections).
    max_connections: int = 4096
    max_connections_per_peer: int = 2048
    #: Seconds for a request's headers to arrive whole, between two pieces of its body,
    #: and for an idle kept-alive connection to be used again (both servers).
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 15.0
    #: The daemon's event loop (`IRONRT_EVENT_LOOP`): None: uvloop when it can be imported,
    #: else plain asyncio (ironrt.daemon.event_loop).
    event_loop: str | None = None
    #: Regions whose national phone formats the PII detectors read (`IRONRT_PII_REGIONS`).
    pii_regions: tuple[str, ...] = DEFAULT_PII_REGIONS
    #: Whether addresses in private ranges are PII findings (`IRONRT_PII_PRIVATE_IPS`).
    pii_private_ips: bool = True
    #: Memory the findings of texts scanned lately may take (`IRONRT_PII_RECALL_SIZE`;
    #: 0: every text is scanned every time; ironrt/pii/recall.py). The default holds ~570 texts
    #: of 3 KB with 36 findings each, ~1,270 with none.
    pii_recall_size: int = DEFAULT_PII_RECALL_BYTES
    #: Traces older than this many seconds are pruned (the usage rollups are kept); 0:
    #: kept forever (`IRONRT_TRACE_RETENTION`, default 30d).
    trace_retention_s: int = 30 * 86400
    #: OTLP/HTTP export (ironrt.observe.otel): `IRONRT_OTLP_ENDPOINT`, which wins over the
    #: standard `OTEL_EXPORTER_OTLP_ENDPOINT` (`otel_endpoint`); off while both are unset.
    otlp_endpoint: str | None = None
    otel_endpoint: str | None = None
    #: `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`: spans carry prompts and answers.
    otel_capture_content: bool = False
    #: (host, port) serving Prometheus `/metrics` over TCP; None: the control socket only.
    metrics_addr: tuple[str, int] | None = None
    #: Seconds after an agent ended before its label sets leave the metrics.
    metrics_agent_ttl: float = 3600.0
    #: Alert webhooks (`IRONRT_ALERT_WEBHOOKS`, `[[alerts.webhooks]]`; ironrt.observe.alerts).
    alert_webhooks: tuple[AlertWebhook, ...] = ()
    #: Control Panel telemetry (ironrt.observe.controlpanel): off while the URL is unset.
    telemetry_url: str | None = None
    telemetry_token: str | None = None  # never in repr(): see __repr__
    telemetry_reprobe: float = 300.0
    telemetry_queue_max: int = 100_000
    #: The fleet ledger (`IRONRT_LEDGER_URL`, ironrt.fleet): None, every scope is local.
    ledger_url: str | None = None  # never in repr(): it may hold a password
    #: Seconds a lease lives unrenewed (`IRONRT_LEASE_TTL`), and between two reads of the
    #: fleet's limits (`IRONRT_LEDGER_POLL`).
    lease_ttl: float = 60.0
    ledger_poll: float = 1.0
    reliability: ReliabilitySettings = msgspec.field(default_factory=ReliabilitySettings)

    def __repr__(self) -> str:  # every field but the secrets (a token, a database URL)
        shown = (f for f in self.__struct_fields__ if f not in ("telemetry_token", "ledger_url"))
        return "Settings(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in shown) + ")"

    @property
    def socket_path(self) -> Path:
        return self.home / "ironrt.sock"

    @property
    def db_path(self) -> Path:
        return self.home / "ironrt.db"

    @property
    def journal_path(self) -> Path:
        """The books' journal (`ironrt.store.journal`): the daemon's money writes not yet
        committed to the database, replayed at its next start."""
        return self.home / "ironrt.db-books"

    @property
    def lock_path(self) -> Path:
        return self.home / "daemon.lock"

    @property
    def log_path(self) -> Path:
        return self.home / "daemon.log"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def keys_path(self) -> Path:
        return self.home / "keys.toml"

    @property
    def config_path(self) -> Path:
        return self.home / "config.toml"

    @property
    def pii_path(self) -> Path:
        """Custom PII entities of every agent of the home (`ironrt/pii/entities.py`)."""
        return self.home / "pii.toml"

    @property
    def providers_path(self) -> Path:
        return self.home / "providers.toml"

    @property
    def openai_base_url(self) -> str | None:
        return self.base_urls.get("openai")

    @property
    def anthropic_base_url(self) -> str | None:
        return self.base_urls.get("anthropic")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every setting; `ConfigError` names the first one that is wrong.

        The providers of `$IRONRT_HOME/providers.toml` are registered in this process's
        provider table (one home per process: the daemon's, the CLI's), so that the keys,
        the router and the agents' environment know them from here on."""
        env = os.environ if environ is None else environ
        home = default_home(env)
        config_file = home / "config.toml"
        file_values = read_file(config_file) if config_file.is_file() else {}
        values = read(env, file_values, config_file)
        providers_file = home / "providers.toml"
        if providers_file.is_file():
            for entry in read_providers(providers_file):
                try:
                    register_provider(entry)
                except ValueError as exc:
                    raise ConfigError(f"{exc} (in {providers_file})") from None
        given = {f: values[name] for f, name in SETTINGS_FIELDS.items() if name in values}
        _check_telemetry(values)
        return cls(
            home=home,
            reliability=_reliability(values),
            base_urls=_base_urls(env, values),
            **_otel(env),
            **given,
        )

    def ensure_home(self) -> None:
        """Create the home folder private to the user (0700), and tighten it if it exists."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.home, 0o700)
        self.logs_dir.mkdir(exist_ok=True, mode=0o700)
