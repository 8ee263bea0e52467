"""Every setting ironrt has, and what each accepts: its environment variable, its kind of
value (a number in a range, a flag, a folder, a host, a URL, a size) and how a raw value
of that kind is parsed and range-checked.

Kept apart from `ironrt.config`, which reads the environment and config.toml and builds
`Settings`: this module is the contract alone, with no reading in it. The accepted values
are the contract documented in docs/configuration.md (a test holds the two together).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

import msgspec

from ironrt.protocol.events import EVENT_KINDS as _EVENT_KINDS
from ironrt.values import MAX_LOG_KEEP, parse_size

__all__ = [
    "ANTHROPIC_ENTRY",
    "BUILTIN_PROVIDERS",
    "BY_NAME",
    "DEFAULT_ALERT_KINDS",
    "EVENT_KINDS",
    "OPENAI_ENTRY",
    "PREFIX",
    "PROVIDERS",
    "PROVIDER_TABLE",
    "SETTINGS",
    "Address",
    "AlertWebhook",
    "Choice",
    "Duration",
    "Flag",
    "Folder",
    "Host",
    "Kind",
    "Number",
    "ProviderEntry",
    "ProviderTable",
    "Retention",
    "Secret",
    "Setting",
    "Size",
    "Url",
    "Webhooks",
    "configured_entry",
    "find",
    "redact_url",
    "register_provider",
    "unregister_provider",
]

PREFIX = "IRONRT_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# ---- what each kind of setting accepts ----------------------------------------------------


class Kind(Protocol):
    """How one kind of value is read. `parse` raises ValueError (its message is not shown:
    the caller names the setting and `accepts`)."""

    @property
    def accepts(self) -> str: ...

    def parse(self, raw: object) -> object: ...


class Number(msgspec.Struct, frozen=True):
    """A number within `[low, high]` (`(low, high]` when `low_open`)."""

    low: float
    high: float
    low_open: bool = False
    integer: bool = False
    #: What the number counts, for the message ("a number of seconds", "a port number").
    noun: str = "a number of seconds"

    @property
    def range(self) -> str:
        var = "n" if self.integer else "s"
        op = "<" if self.low_open else "<="
        return f"{self.low:g} {op} {var} <= {self.high:g}"

    @property
    def accepts(self) -> str:
        return f"{self.noun}, {self.range}"

    def parse(self, raw: object) -> float:
        if isinstance(raw, bool):  # TOML `true` is no number, whatever Python thinks
            raise ValueError(raw)
        if isinstance(raw, str):
            text = raw.strip()
            value: float = int(text) if self.integer else float(text)
        elif isinstance(raw, int | float):
            value = raw
        else:
            raise ValueError(raw)
        if self.integer:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(raw)
            value = int(value)
        else:
            value = float(value)
        self.check(value)
        return value

    def check(self, value: float) -> None:
        low = value <= self.low if self.low_open else value < self.low
        if not math.isfinite(value) or low or value > self.high:
            raise ValueError(value)


class Flag(msgspec.Struct, frozen=True):
    accepts: str = "a boolean (1/0, true/false, yes/no, on/off)"

    def parse(self, raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower() if isinstance(raw, str | int) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(raw)


class Choice(msgspec.Struct, frozen=True):
    """One word out of a few (`asyncio`, `uvloop`), in any case."""

    words: tuple[str, ...]

    @property
    def accepts(self) -> str:
        return "one of " + ", ".join(self.words)

    def parse(self, raw: object) -> str:
        text = raw.strip().lower() if isinstance(raw, str) else None
        if text is None or text not in self.words:
            raise ValueError(raw)
        return text


class Folder(msgspec.Struct, frozen=True):
    accepts: str = "a folder"

    def parse(self, raw: object) -> Path:
        if not isinstance(raw, str):
            raise ValueError(raw)
        return Path(raw.strip()).expanduser()


class Host(msgspec.Struct, frozen=True):
    accepts: str = "a host name or IP address"

    def parse(self, raw: object) -> str:
        if not isinstance(raw, str) or any(c.isspace() or c in "/[]" for c in raw.strip()):
            raise ValueError(raw)
        return raw.strip()


class Url(msgspec.Struct, frozen=True):
    accepts: str = "an http:// or https:// URL"

    def parse(self, raw: object) -> str:
        if not isinstance(raw, str):
            raise ValueError(raw)
        text = raw.strip()
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(raw)
        _ = parts.port  # a port that is no number raises here, not on the first call
        return text


class Size(msgspec.Struct, frozen=True):
    accepts: str = "a size from 1KB to 1TB (10MB, 512KB, or bytes)"

    def parse(self, raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise ValueError(raw)
        return parse_size(str(raw))


class RecallSize(msgspec.Struct, frozen=True):
    """Memory for the PII recall: a size from 1KB to 1GB, or 0/off (no recall)."""

    accepts: str = "a size from 1KB to 1GB (8MB, 512KB, or bytes), or 0/off (no recall)"

    def parse(self, raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise ValueError(raw)
        text = str(raw).strip().lower()
        if text in ("0", "off"):
            return 0
        size = parse_size(text)
        if size > 1024**3:
            raise ValueError(raw)
        return size


class Retention(msgspec.Struct, frozen=True):
    """How long traces are kept, in seconds; 0: forever. At least an hour, so `30m` meant
    as thirty months is refused rather than emptying the traces every half hour."""

    accepts: str = "a whole number and a unit h or d, 1h to 3650d (12h, 30d), or 0/off (forever)"

    def parse(self, raw: object) -> int:
        text = str(raw).strip().lower() if isinstance(raw, str | int) else None
        if isinstance(raw, bool) or text is None:
            raise ValueError(raw)
        if text in ("0", "off"):
            return 0
        match = re.fullmatch(r"([1-9][0-9]{0,6})(h|d)", text)
        if match is None:
            raise ValueError(raw)
        seconds = int(match.group(1)) * (3600 if match.group(2) == "h" else 86400)
        if seconds > 3650 * 86400:
            raise ValueError(raw)
        return seconds


class Regions(msgspec.Struct, frozen=True):
    accepts: str = "a list of ISO 3166 region codes with a phone numbering plan (US,GB,DE)"

    def parse(self, raw: object) -> tuple[str, ...]:
        from phonenumbers import SUPPORTED_REGIONS  # only when set: start-up stays light

        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise ValueError(raw)
        out: list[str] = []
        for item in items:
            code = str(item).strip().upper()
            if code and code not in SUPPORTED_REGIONS:
                raise ValueError(item)
            if code and code not in out:
                out.append(code)
        return tuple(out)


class Address(msgspec.Struct, frozen=True):
    """`host:port` to listen on (an IPv6 address in brackets); the port 1-65535."""

    accepts: str = "host:port, e.g. 127.0.0.1:9464 or [::1]:9464 (port 1-65535)"

    def parse(self, raw: object) -> tuple[str, int]:
        if not isinstance(raw, str):
            raise ValueError(raw)
        host, sep, port = raw.strip().rpartition(":")
        if host.startswith("[") and host.endswith("]") and ":" in host:
            host = host[1:-1]
        elif ":" in host:  # an IPv6 address without brackets: its port is ambiguous
            raise ValueError(raw)
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(raw)
        return Host().parse(host), int(port)


# ---- alerts and telemetry (ironrt.observe.alerts, ironrt.observe.controlpanel) ------------

_DURATION = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,3})?)(ms|s|m|h|d)?")
_DURATION_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Duration(msgspec.Struct, frozen=True):
    """A duration written `500ms`, `30s`, `5m`, `1h`, `1d`, or a plain number of seconds."""

    low: float
    high: float

    @property
    def range(self) -> str:
        return f"{self.low:g} <= s <= {self.high:g}"

    @property
    def accepts(self) -> str:
        return f"a duration (500ms, 30s, 5m, 1h; a plain number is seconds), {self.range}"

    def parse(self, raw: object) -> float:
        if isinstance(raw, bool):
            raise ValueError(raw)
        if isinstance(raw, int | float):
            value = float(raw)
        elif isinstance(raw, str) and (match := _DURATION.fullmatch(raw.strip())):
            value = float(match.group(1)) * _DURATION_UNIT_S[match.group(2) or "s"]
        else:
            raise ValueError(raw)
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise ValueError(raw)
        return value


#: Every kind of event the daemon publishes (`ironrt events`): what an alert webhook's
#: `events` may name. Defined with the events, once.
EVENT_KINDS = _EVENT_KINDS
#: What a webhook is sent when it names no events: what someone should act on.
DEFAULT_ALERT_KINDS = (
    "BudgetWarning",
    "BudgetExhausted",
    "PiiBlocked",
    "CircuitOpened",
    "AgentFailed",
)


def redact_url(url: str) -> str:
    """A URL as it may be shown in a log line or an error: scheme, host and port only. A
    webhook's path and query are often its secret (Slack's are), userinfo always is."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "(not a URL)"
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    hidden = "/…" if (parts.path not in ("", "/") or parts.query or parts.username) else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


class AlertWebhook(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One alert webhook: where to POST and which kinds of event (see DEFAULT_ALERT_KINDS)."""

    url: str
    events: tuple[str, ...] = DEFAULT_ALERT_KINDS

    def __repr__(self) -> str:  # never the URL's secret parts in a traceback or a log
        return f"AlertWebhook({redact_url(self.url)!r}, events={list(self.events)!r})"


class Webhooks(msgspec.Struct, frozen=True):
    """`IRONRT_ALERT_WEBHOOKS`: comma-separated URLs; in config.toml also a list of URLs
    or of `[[alerts.webhooks]]` tables (`url`, `events`). Errors say what is wrong without
    showing a URL whole (`shown`)."""

    accepts: str = (
        "comma-separated http:// or https:// URLs (in config.toml also [[alerts.webhooks]] "
        "tables with url and events)"
    )

    def parse(self, raw: object) -> tuple[AlertWebhook, ...]:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise ValueError("not a list")
        hooks: list[AlertWebhook] = []
        for item in items:
            table = {"url": item} if isinstance(item, str) else item
            if not isinstance(table, dict):
                raise ValueError(f"{item!r} is neither a URL nor a table")
            unknown = sorted(set(table) - {"url", "events"})
            if unknown:
                raise ValueError(f"unknown key {unknown[0]!r} in a webhook (url, events)")
            url = table.get("url")
            if isinstance(url, str) and not url.strip() and isinstance(item, str):
                continue  # "a,,b" or a trailing comma
            try:
                url = Url().parse(url)
            except ValueError:
                shown = redact_url(url) if isinstance(url, str) else "(not a URL)"
                if shown == "(not a URL)":
                    raise ValueError("an entry that is no URL (scheme://host/...)") from None
                raise ValueError(f"{shown} is not an http:// or https:// URL") from None
            events = table.get("events", DEFAULT_ALERT_KINDS)
            if not isinstance(events, list | tuple) or not events:
                raise ValueError(f"the events of {redact_url(url)} must be a list of kinds")
            for kind in events:
                if kind not in EVENT_KINDS:
                    import difflib  # only on the error path

                    close = difflib.get_close_matches(str(kind), EVENT_KINDS, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise ValueError(f"unknown event kind {kind!r}{hint}")
            hooks.append(AlertWebhook(url, tuple(dict.fromkeys(events))))
        return tuple(hooks)

    def shown(self, raw: object, why: ValueError) -> str:
        return str(why)


class Secret(msgspec.Struct, frozen=True):
    """A token sent to a service: printable, no spaces, never shown in an error."""

    accepts: str = "a token (printable, no spaces; never shown)"

    def parse(self, raw: object) -> str:
        if not isinstance(raw, str) or not raw.strip().isprintable() or " " in raw.strip():
            raise ValueError("bad token")
        return raw.strip()

    def shown(self, raw: object, why: ValueError) -> str:
        return "a value that is not (hidden)"


class PostgresUrl(msgspec.Struct, frozen=True):
    """The fleet ledger's database: a libpq-style URL (its password never shown)."""

    accepts: str = (
        "a postgresql:// URL (postgresql://USER:PASSWORD@HOST:PORT/DB, or "
        "postgresql:///DB?host=/socket/folder)"
    )

    def parse(self, raw: object) -> str:
        if not isinstance(raw, str):
            raise ValueError("not text")
        text = raw.strip()
        parts = urlsplit(text)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("not a postgresql:// URL")
        if not parts.hostname and "host=" not in parts.query:
            raise ValueError("no host")
        _ = parts.port  # a port that is no number raises here, not at the first sync
        return text

    def shown(self, raw: object, why: ValueError) -> str:
        if not isinstance(raw, str):
            return repr(raw)
        parts = urlsplit(raw.strip())
        if parts.password is not None:
            return f"a URL that is not ({why}; password hidden)"
        return f"{raw.strip()!r} ({why})"


class Setting(msgspec.Struct, frozen=True):
    """One setting: its environment variable and the values it accepts."""

    name: str
    kind: Kind
    #: False: environment only (`IRONRT_HOME` locates config.toml, so it cannot be in it).
    in_file: bool = True

    @property
    def key(self) -> str:
        """The short spelling config.toml also accepts (`router_port`)."""
        return self.name.removeprefix(PREFIX).lower()


# ---- providers ----------------------------------------------------------------------------
#
# The provider table lives here, at the bottom, because the layers below `ironrt.providers`
# need it too: `keys` loads each provider's key, `config` reads each base URL, and the
# settings below are made from it. `ironrt.providers.registry` is where the rest of the
# code meets the table (and where an entry becomes an adapter).

Family = Literal["openai", "anthropic"]
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProviderEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One provider, as data: everything two providers of the same API family differ in.
    Adding an OpenAI-compatible provider is one entry (`register_provider`, or a
    `[providers.NAME]` table in `$IRONRT_HOME/providers.toml`)."""

    name: str
    #: The API it speaks: paths, bodies, streams and usage (`ironrt.providers.surfaces`).
    family: Family
    #: How the real key goes upstream: `Authorization: Bearer KEY` or `x-api-key: KEY`.
    auth: Literal["bearer", "x-api-key"]
    #: The shape of its JSON errors (and of the router's own answers to its agents).
    error_shape: Family
    #: Variables holding the real key, canonical first: the daemon reads them, agents never
    #: see them, and an agent gets its IC_TOKEN in the first one.
    key_env: tuple[str, ...]
    #: Key variables whose value goes upstream as a bearer token whatever `auth` says.
    bearer_key_env: tuple[str, ...] = ()
    #: The variable that overrides `base_url` (a setting of config.toml for the built-in
    #: providers, the daemon's environment only for the others).
    base_url_env: str
    #: The upstream the calls go to, with or without `/v1`.
    base_url: str
    #: Its provider id in genai-prices (model lookups: context windows, prices).
    price_provider: str
    #: The models the offline provider lists for it.
    models: tuple[str, ...] = ()
    #: Where its API sits on the router (`/acme` serves `/acme/v1/...`); empty only for the
    #: built-in providers, which share `/v1/...` and are told apart by path and headers.
    path_prefix: str = ""
    #: Agent variables set to its router base URL, where its SDK looks for one.
    sdk_base_url_env: tuple[str, ...] = ()


OPENAI_ENTRY = ProviderEntry(
    name="openai",
    family="openai",
    auth="bearer",
    error_shape="openai",
    key_env=("OPENAI_API_KEY",),
    base_url_env="IRONRT_OPENAI_BASE_URL",
    base_url="https://api.openai.com",
    price_provider="openai",
    models=("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small"),
    sdk_base_url_env=("OPENAI_BASE_URL", "OPENAI_API_BASE"),
)
ANTHROPIC_ENTRY = ProviderEntry(
    name="anthropic",
    family="anthropic",
    auth="x-api-key",
    error_shape="anthropic",
    key_env=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
    bearer_key_env=("ANTHROPIC_AUTH_TOKEN",),
    base_url_env="IRONRT_ANTHROPIC_BASE_URL",
    base_url="https://api.anthropic.com",
    price_provider="anthropic",
    models=("claude-haiku-4-5", "claude-sonnet-4-5", "claude-3-5-haiku-latest"),
    sdk_base_url_env=("ANTHROPIC_BASE_URL",),
)
BUILTIN_PROVIDERS: tuple[ProviderEntry, ...] = (OPENAI_ENTRY, ANTHROPIC_ENTRY)
#: The built-in providers, whose base URL and two timeouts are settings of their own
#: (`IRONRT_OPENAI_BASE_URL`, `IRONRT_OPENAI_READ_TIMEOUT` ...).
PROVIDERS = tuple(entry.name for entry in BUILTIN_PROVIDERS)

_TABLE: dict[str, ProviderEntry] = {entry.name: entry for entry in BUILTIN_PROVIDERS}
#: Every provider this process knows, by name: the built-in ones, then the registered ones
#: (read-only: `register_provider` adds to it).
PROVIDER_TABLE: Mapping[str, ProviderEntry] = _TABLE


def register_provider(entry: ProviderEntry) -> None:
    """Add a provider (or replace one registered before: the last registration wins);
    ValueError says what is wrong with it. A built-in provider cannot be replaced."""
    where = f"provider {entry.name!r}"
    if not _NAME.match(entry.name):
        raise ValueError(f"{where}: a name is 1-32 of a-z, 0-9, '-' and '_', from a letter")
    if entry.name in PROVIDERS or entry.name == "v1":
        raise ValueError(f"{where}: the name is taken by ironrt")
    if entry.family not in ("openai", "anthropic") or entry.error_shape not in (
        "openai",
        "anthropic",
    ):
        raise ValueError(f"{where}: family and error_shape are 'openai' or 'anthropic'")
    if entry.auth not in ("bearer", "x-api-key"):
        raise ValueError(f"{where}: auth is 'bearer' or 'x-api-key'")
    names = (*entry.key_env, *entry.bearer_key_env, entry.base_url_env, *entry.sdk_base_url_env)
    bad = [n for n in names if not _VARIABLE.match(n)]
    if not entry.key_env or bad:
        raise ValueError(f"{where}: needs key variables, and valid names (not {bad})")
    # Key variables are removed from every agent's environment (the first is then set to
    # its IC_TOKEN) and SDK base-URL variables set to the router: a system variable there
    # would break every agent (PATH) or hand the daemon a wrong key (HOME).
    taken = [n for n in (*entry.key_env, *entry.sdk_base_url_env) if _not_a_provider_s(n)]
    if taken:
        raise ValueError(
            f"{where}: {taken[0]} is not a provider's variable: every agent's environment "
            "needs it as it is (key_env and sdk_base_url_env name the provider's own, "
            f"such as {entry.name.upper().replace('-', '_')}_API_KEY)"
        )
    try:
        Url().parse(entry.base_url)
    except ValueError:
        raise ValueError(f"{where}: base_url must be {Url().accepts}") from None
    if entry.path_prefix != f"/{entry.name}":
        raise ValueError(f"{where}: its path prefix is '/{entry.name}'")
    for other in _TABLE.values():
        if other.name == entry.name:
            continue
        shared = set(entry.sdk_base_url_env) & set(other.sdk_base_url_env)
        if shared:
            raise ValueError(f"{where}: {sorted(shared)} already point {other.name!r}'s SDK")
    _TABLE[entry.name] = entry


#: What an agent's process needs as it is, or ironrt sets for it: never a provider's
#: key or base-URL variable.
_SYSTEM_VARIABLES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "TERM", "LANG",
        "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "DISPLAY", "MAIL", "HOSTNAME",
        "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "NODE_PATH", "NOTIFY_SOCKET",
        "IC_TOKEN", "NO_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
    }
)  # fmt: skip
_SYSTEM_PREFIXES = ("LC_", "LD_", "XDG_", "SSH_", "DBUS_", "SYSTEMD_", "IRONRT_")


def _not_a_provider_s(name: str) -> bool:
    upper = name.upper()
    return upper in _SYSTEM_VARIABLES or upper.startswith(_SYSTEM_PREFIXES)


def unregister_provider(name: str) -> None:
    """Forget a registered provider (a test's, say); the built-in ones stay."""
    if name in PROVIDERS:
        raise ValueError(f"provider {name!r} is built in")
    _TABLE.pop(name, None)


class ProviderTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A `[providers.NAME]` table of providers.toml: `base_url` is required, the rest
    defaults from the name (`ACME_API_KEY`, `IRONRT_ACME_BASE_URL`, `ACME_BASE_URL`) and
    the family (auth and error shape of OpenAI or Anthropic)."""

    base_url: str
    family: Family = "openai"
    key_env: list[str] | None = None
    base_url_env: str | None = None
    auth: Literal["bearer", "x-api-key"] | None = None
    error_shape: Family | None = None
    price_provider: str | None = None
    models: list[str] = []
    sdk_base_url_env: list[str] | None = None


def configured_entry(name: str, table: ProviderTable) -> ProviderEntry:
    """The entry a providers.toml table describes, its defaults filled in."""
    stem = name.upper().replace("-", "_")
    anthropic = table.family == "anthropic"
    return ProviderEntry(
        name=name,
        family=table.family,
        auth=table.auth or ("x-api-key" if anthropic else "bearer"),
        error_shape=table.error_shape or table.family,
        key_env=tuple(table.key_env or (f"{stem}_API_KEY",)),
        base_url_env=table.base_url_env or f"IRONRT_{stem}_BASE_URL",
        base_url=table.base_url,
        price_provider=table.price_provider or name,
        models=tuple(table.models),
        path_prefix=f"/{name}",
        sdk_base_url_env=tuple(table.sdk_base_url_env or (f"{stem}_BASE_URL",)),
    )


def _seconds(low: float, high: float, *, low_open: bool = True) -> Number:
    return Number(low, high, low_open=low_open)


def _count(low: int, high: int) -> Number:
    return Number(low, high, integer=True, noun="a whole number")


_CONNECT = _seconds(0, 300)
# A reasoning model can think for many minutes before its first byte; a day is the most
# any call should be left silent.
_READ = _seconds(0, 86400)

#: Every setting there is. Ranges: wide enough for tests (tenths of a second) and odd
#: deployments, narrow enough that a typo (`0`, an extra zero or three) is caught.
SETTINGS: tuple[Setting, ...] = (
    Setting("IRONRT_HOME", Folder(), in_file=False),
    Setting("IRONRT_ROUTER_HOST", Host()),
    Setting("IRONRT_ROUTER_PORT", Number(0, 65535, integer=True, noun="a port number")),
    *(Setting(entry.base_url_env, Url()) for entry in BUILTIN_PROVIDERS),
    Setting("IRONRT_OFFLINE", Flag()),
    Setting("IRONRT_NO_AUTOSTART", Flag()),
    Setting("IRONRT_CONNECT_TIMEOUT", _CONNECT),
    Setting("IRONRT_READ_TIMEOUT", _READ),
    *(
        Setting(f"IRONRT_{provider.upper()}_{which}_TIMEOUT", kind)
        for provider in PROVIDERS
        for which, kind in (("CONNECT", _CONNECT), ("READ", _READ))
    ),
    Setting("IRONRT_RETRY_MAX_ATTEMPTS", _count(1, 10)),
    Setting("IRONRT_RETRY_BACKOFF_INITIAL_S", _seconds(0, 60)),
    Setting("IRONRT_RETRY_BACKOFF_MAX_S", _seconds(0, 600)),
    Setting("IRONRT_RETRY_AFTER_CAP_S", _seconds(0, 600, low_open=False)),
    Setting("IRONRT_RETRY_DEADLINE_S", _seconds(0, 3600)),
    Setting("IRONRT_BREAKER_FAIL_MAX", _count(1, 1000)),
    Setting("IRONRT_BREAKER_RESET_S", _seconds(0, 3600)),
    # The supervisor doubles it per unstable restart up to 60 s; 0 would restart a crashing
    # agent in a tight loop.
    Setting("IRONRT_RESTART_BACKOFF", _seconds(0.01, 60, low_open=False)),
    # Each sample walks /proc for every agent's tree; at 0 it did so without pause (99 % CPU).
    Setting("IRONRT_SAMPLE_INTERVAL", _seconds(0.1, 3600, low_open=False)),
    Setting("IRONRT_ADMISSION_TIMEOUT", _seconds(0, 3600)),
    Setting("IRONRT_LOG_MAX_SIZE", Size()),
    Setting("IRONRT_LOG_KEEP", _count(1, MAX_LOG_KEEP)),
    # Both servers: slow or silent clients are closed, connections over a cap evict idle
    # ones (ironrt.connections). Below 16 connections the CLI's own followers could not fit.
    Setting("IRONRT_MAX_CONNECTIONS", _count(16, 1_000_000)),
    Setting("IRONRT_MAX_CONNECTIONS_PER_PEER", _count(16, 1_000_000)),
    Setting("IRONRT_HEADER_TIMEOUT", _seconds(0.1, 300, low_open=False)),
    Setting("IRONRT_BODY_TIMEOUT", _seconds(0.1, 3600, low_open=False)),
    Setting("IRONRT_KEEPALIVE_TIMEOUT", _seconds(1, 3600, low_open=False)),
    # The daemon's event loop: uvloop when installed (faster router), plain asyncio otherwise.
    Setting("IRONRT_EVENT_LOOP", Choice(("uvloop", "asyncio"))),
    Setting("IRONRT_PII_REGIONS", Regions()),
    Setting("IRONRT_PII_PRIVATE_IPS", Flag()),
    # The findings of texts scanned lately, kept so a conversation's resent history is not
    # scanned again every call (ironrt/pii/recall.py).
    Setting("IRONRT_PII_RECALL_SIZE", RecallSize()),
    # Traces older than this are pruned in the background; the usage rollups stay.
    Setting("IRONRT_TRACE_RETENTION", Retention()),
    # OpenTelemetry export (ironrt.observe.otel); OTEL_EXPORTER_OTLP_ENDPOINT when unset.
    Setting("IRONRT_OTLP_ENDPOINT", Url()),
    Setting("IRONRT_METRICS_ADDR", Address()),
    # An hour by default; a week at most keeps the label sets of ended agents bounded.
    Setting("IRONRT_METRICS_AGENT_TTL", _seconds(1, 604800, low_open=False)),
    Setting("IRONRT_ALERT_WEBHOOKS", Webhooks()),
    Setting("IRONRT_TELEMETRY_URL", Url()),
    Setting("IRONRT_TELEMETRY_TOKEN", Secret()),
    Setting("IRONRT_TELEMETRY_REPROBE", Duration(0.1, 86400)),
    Setting("IRONRT_TELEMETRY_QUEUE_MAX", _count(100, 100_000_000)),
    # The fleet ledger (ironrt.fleet): `project:*` and `global` shared through PostgreSQL.
    Setting("IRONRT_LEDGER_URL", PostgresUrl()),
    # A lease a daemon does not renew is charged whole after this long.
    Setting("IRONRT_LEASE_TTL", _seconds(1, 86400, low_open=False)),
    # How often limits set elsewhere are read, and spend reported (the lease cadence).
    Setting("IRONRT_LEDGER_POLL", _seconds(0.05, 60, low_open=False)),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
_BY_KEY: dict[str, Setting] = {s.key.upper(): s for s in SETTINGS}


def find(key: str) -> Setting | None:
    """The setting a config.toml key names, spelt either way (`IRONRT_ROUTER_PORT` or
    `router_port`, in any case); None if it names none."""
    word = key.upper()
    return BY_NAME.get(word) or _BY_KEY.get(word)
