"""Every setting ironrt has, and what each accepts: its environment variable, its kind of
value (a number in a range, a flag, a folder, a host, a URL, a size) and how a raw value
of that kind is parsed and range-checked.

Kept apart from `ironrt.config`, which reads the environment and config.toml and builds
`Settings`: this module is the contract alone, with no reading in it. The accepted values
are the contract documented in docs/configuration.md (a test holds the two together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from ironrt.values import MAX_LOG_KEEP, parse_size

__all__ = [
    "BY_NAME",
    "PREFIX",
    "PROVIDERS",
    "SETTINGS",
    "Flag",
    "Folder",
    "Host",
    "Kind",
    "Number",
    "Setting",
    "Size",
    "Url",
    "find",
]

PREFIX = "IRONRT_"
#: Providers whose two timeouts can be set one by one (`IRONRT_OPENAI_READ_TIMEOUT` ...).
PROVIDERS = ("openai", "anthropic")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# ---- what each kind of setting accepts ----------------------------------------------------


class Kind(Protocol):
    """How one kind of value is read. `parse` raises ValueError (its message is not shown:
    the caller names the setting and `accepts`)."""

    @property
    def accepts(self) -> str: ...

    def parse(self, raw: object) -> object: ...


@dataclass(frozen=True, slots=True)
class Number:
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


@dataclass(frozen=True, slots=True)
class Flag:
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


@dataclass(frozen=True, slots=True)
class Folder:
    accepts: str = "a folder"

    def parse(self, raw: object) -> Path:
        if not isinstance(raw, str):
            raise ValueError(raw)
        return Path(raw.strip()).expanduser()


@dataclass(frozen=True, slots=True)
class Host:
    accepts: str = "a host name or IP address"

    def parse(self, raw: object) -> str:
        if not isinstance(raw, str) or any(c.isspace() or c in "/[]" for c in raw.strip()):
            raise ValueError(raw)
        return raw.strip()


@dataclass(frozen=True, slots=True)
class Url:
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


@dataclass(frozen=True, slots=True)
class Size:
    accepts: str = "a size from 1KB to 1TB (10MB, 512KB, or bytes)"

    def parse(self, raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise ValueError(raw)
        return parse_size(str(raw))


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its environment variable and the values it accepts."""

    name: str
    kind: Kind
    #: False: environment only (`IRONRT_HOME` locates config.toml, so it cannot be in it).
    in_file: bool = True

    @property
    def key(self) -> str:
        """The short spelling config.toml also accepts (`router_port`)."""
        return self.name.removeprefix(PREFIX).lower()


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
    Setting("IRONRT_OPENAI_BASE_URL", Url()),
    Setting("IRONRT_ANTHROPIC_BASE_URL", Url()),
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
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
_BY_KEY: dict[str, Setting] = {s.key.upper(): s for s in SETTINGS}


def find(key: str) -> Setting | None:
    """The setting a config.toml key names, spelt either way (`IRONRT_ROUTER_PORT` or
    `router_port`, in any case); None if it names none."""
    word = key.upper()
    return BY_NAME.get(word) or _BY_KEY.get(word)
