"""The reliability knobs shared by the breaker, retry and rate-limit policies and the forwarder.

One small Struct so the daemon reads them once (environment, or `config.toml` merged into the
same mapping) and hands the same object to the policies and to the router's forwarder, which
is the only place that sleeps and sets timeouts. Every value is validated where it is built,
so a bad setting stops the daemon at start with a message naming the variable, instead of
surfacing later as a strange retry storm or an immediate timeout.

Environment variables (all in seconds unless noted):

    IRONRT_BREAKER_FAIL_MAX          consecutive upstream failures that open a circuit (5)
    IRONRT_BREAKER_RESET_S           how long an open circuit refuses before a probe (30)
    IRONRT_RETRY_MAX_ATTEMPTS        tries per call, the first included; 1 = no retry (3)
    IRONRT_RETRY_BACKOFF_INITIAL_S   first backoff window (0.5)
    IRONRT_RETRY_BACKOFF_MAX_S       largest backoff window (8)
    IRONRT_RETRY_AFTER_CAP_S         most of an upstream Retry-After the router waits (20)
    IRONRT_RETRY_DEADLINE_S          no retry may start later than this after the call (60)
    IRONRT_CONNECT_TIMEOUT           TCP+TLS connect timeout (5)
    IRONRT_READ_TIMEOUT              longest silence from the upstream, also between two
                                     chunks of a stream: a stalled stream is cut after it (600)
    IRONRT_<PROVIDER>_CONNECT_TIMEOUT, IRONRT_<PROVIDER>_READ_TIMEOUT
                                     per provider overrides (PROVIDER: OPENAI, ANTHROPIC)

The timeout defaults are those of the official SDKs (5 s connect, 600 s read), so routing an
agent through ironrt never cuts a slow reasoning call the SDK alone would have waited for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ironrt.config import ConfigError

#: Providers whose timeouts can be overridden one by one from the environment.
PROVIDERS = ("openai", "anthropic")


@dataclass(frozen=True, slots=True)
class _Rule:
    """How one setting is read and what values it accepts."""

    env: str
    integer: bool
    minimum: float
    #: True: the value must be strictly greater than `minimum`.
    exclusive: bool


_RULES: dict[str, _Rule] = {
    "fail_max": _Rule("IRONRT_BREAKER_FAIL_MAX", True, 1, False),
    "reset_timeout_s": _Rule("IRONRT_BREAKER_RESET_S", False, 0, True),
    "max_attempts": _Rule("IRONRT_RETRY_MAX_ATTEMPTS", True, 1, False),
    "backoff_initial_s": _Rule("IRONRT_RETRY_BACKOFF_INITIAL_S", False, 0, True),
    "backoff_max_s": _Rule("IRONRT_RETRY_BACKOFF_MAX_S", False, 0, True),
    "retry_after_cap_s": _Rule("IRONRT_RETRY_AFTER_CAP_S", False, 0, False),
    "deadline_s": _Rule("IRONRT_RETRY_DEADLINE_S", False, 0, True),
    "connect_timeout_s": _Rule("IRONRT_CONNECT_TIMEOUT", False, 0, True),
    "read_timeout_s": _Rule("IRONRT_READ_TIMEOUT", False, 0, True),
}


def _check(label: str, rule: _Rule, value: float) -> None:
    kind = "an integer" if rule.integer else "a number of seconds"
    bound = f"> {rule.minimum:g}" if rule.exclusive else f">= {rule.minimum:g}"
    low = value <= rule.minimum if rule.exclusive else value < rule.minimum
    if not math.isfinite(value) or low or (rule.integer and value != int(value)):
        raise ConfigError(f"{label} must be {kind} {bound}, got {value!r}")


def _parse(label: str, rule: _Rule, raw: object) -> float:
    if isinstance(raw, bool):
        raise ConfigError(f"{label} must be a number, got {raw!r}")
    try:
        value = int(str(raw).strip()) if rule.integer else float(str(raw).strip())
    except ValueError:
        kind = "an integer" if rule.integer else "a number of seconds"
        raise ConfigError(f"{label} must be {kind}, got {raw!r}") from None
    _check(label, rule, value)
    return value


_TIMEOUT_VARS = (("CONNECT_TIMEOUT", "connect_timeout_s"), ("READ_TIMEOUT", "read_timeout_s"))


class Timeouts(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The two timeouts of one provider, as the forwarder gives them to httpx."""

    connect_s: float
    read_s: float

    def __post_init__(self) -> None:
        _check("connect_s", _RULES["connect_timeout_s"], self.connect_s)
        _check("read_s", _RULES["read_timeout_s"], self.read_s)


class ReliabilitySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Breaker, retry and timeout settings; see the module docstring for the variables."""

    fail_max: int = 5
    reset_timeout_s: float = 30.0
    max_attempts: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_cap_s: float = 20.0
    deadline_s: float = 60.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0
    #: Per provider overrides of the two timeouts, keyed by the adapter's name.
    provider_timeouts: dict[str, Timeouts] = {}

    def __post_init__(self) -> None:
        for field, rule in _RULES.items():
            _check(field, rule, getattr(self, field))
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

    @classmethod
    def from_env(cls, environ: Mapping[str, object]) -> ReliabilitySettings:
        """Read the settings from `environ`; unset or empty variables keep their default.

        Raises `ConfigError` naming the variable when a value is not a number or out of range.
        """
        values: dict[str, float] = {}
        for field, rule in _RULES.items():
            raw = environ.get(rule.env)
            if raw is not None and str(raw).strip() != "":
                values[field] = _parse(rule.env, rule, raw)
        defaults = cls()
        connect = values.get("connect_timeout_s", defaults.connect_timeout_s)
        read = values.get("read_timeout_s", defaults.read_timeout_s)
        overrides: dict[str, Timeouts] = {}
        for provider in PROVIDERS:
            prefix = f"IRONRT_{provider.upper()}_"
            found: dict[str, float] = {}
            for suffix, field in _TIMEOUT_VARS:
                raw = environ.get(prefix + suffix)
                if raw is not None and str(raw).strip() != "":
                    found[suffix] = _parse(prefix + suffix, _RULES[field], raw)
            if found:
                overrides[provider] = Timeouts(
                    found.get("CONNECT_TIMEOUT", connect), found.get("READ_TIMEOUT", read)
                )
        initial = values.get("backoff_initial_s", defaults.backoff_initial_s)
        ceiling = values.get("backoff_max_s", defaults.backoff_max_s)
        if ceiling < initial:
            raise ConfigError(
                f"IRONRT_RETRY_BACKOFF_MAX_S ({ceiling:g}) must be >= "
                f"IRONRT_RETRY_BACKOFF_INITIAL_S ({initial:g})"
            )
        kwargs: dict[str, Any] = {k: int(v) if _RULES[k].integer else v for k, v in values.items()}
        return cls(**kwargs, provider_timeouts=overrides)
