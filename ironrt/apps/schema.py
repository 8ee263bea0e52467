"""The apps file's schema: an entry as written (`AgentEntry`), and once resolved
(`AgentSpec`, `App`), whose digest says whether a running agent still matches its entry.

The keys and defaults of an entry are `ironrt start`'s options, so that a fleet declared
in a file runs the way the same agents started by hand would.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from ironrt.protocol import OnBudget, PiiMode, RestartPolicy
from ironrt.values import (
    DEFAULT_MAX_RESTARTS,
    MAX_MIN_UPTIME_S,
    check_resource_limits,
    parse_cpu_seconds,
    parse_memory,
    parse_size,
    parse_uptime,
)

__all__ = [
    "APPS_FILE",
    "EXPECTED",
    "AgentEntry",
    "AgentSpec",
    "App",
    "AppsFile",
    "cpu_seconds",
    "log_max_bytes",
    "memory_bytes",
    "min_uptime_s",
]

#: The file `up` and `down` read when given no FILE (or given a folder).
APPS_FILE = "ironrt.toml"


class AppsFile(msgspec.Struct, forbid_unknown_fields=True):
    """The top level: `[agents.NAME]` tables and nothing else. Each table is converted to an
    `AgentEntry` on its own (see `ironrt.apps.load.read_apps`), so its errors can name the
    entry."""

    agents: dict[str, Any] = {}


class AgentEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One `[agents.NAME]` table as written. The keys and defaults are `ironrt start`'s
    options; paths are relative to the file's folder, not to where `up` runs."""

    script: str | None = None
    command: list[str] | None = None
    args: list[str] = []
    cwd: str | None = None
    env: dict[str, str] = {}
    env_files: list[str] = []
    python: str | None = None
    budget: float | None = None
    project: str | None = None
    restart: RestartPolicy = "no"
    max_restarts: int | Literal["unlimited"] = DEFAULT_MAX_RESTARTS
    min_uptime: str | float = "5s"
    on_budget: OnBudget = "block"
    pii: PiiMode = "detect"
    #: `"email,phone"`, `["email", "secret=block"]` or `{ email = "redact" }`: as
    #: `ironrt start --pii-types` takes them (`ironrt.values.parse_pii_types`).
    pii_types: str | list[str] | dict[str, str] | None = None
    #: The agent's own pii.toml, relative to the apps file's folder.
    pii_file: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    log_max_size: str | int | None = None
    log_keep: int | None = None
    max_memory: str | int | None = None
    max_open_files: int | None = None
    max_cpu_seconds: str | int | None = None
    allow_unmetered: bool = False


#: What each key takes, for the one-line error when a value has the wrong type.
EXPECTED: dict[str, str] = {
    "script": "a path to the agent's script or program (a string)",
    "command": "a list of strings: a program and its arguments",
    "args": "a list of strings",
    "cwd": "a folder (a string)",
    "env": 'a table of strings, e.g. { LOG_LEVEL = "info" }',
    "env_files": 'a list of dotenv files, e.g. ["secrets.env"]',
    "python": "a path or program name (a string)",
    "budget": "a number of USD",
    "project": "a project name (a string)",
    "restart": '"no", "on-failure" or "always"',
    "max_restarts": 'a whole number or "unlimited"',
    "min_uptime": 'a duration such as "500ms", "5s", "2m", or a number of seconds',
    "on_budget": '"block", "pause" or "stop"',
    "pii": '"off", "detect", "redact" or "block"',
    "pii_types": 'PII types: "email,phone", a list such as ["email", "secret=block"], or a '
    'table such as { email = "redact", secret = "block" }',
    "pii_file": "a path to the agent's own pii.toml (a string)",
    "rpm": "a whole number of requests per minute",
    "tpm": "a whole number of tokens per minute",
    "log_max_size": 'a size such as "10MB", or a number of bytes',
    "log_keep": "a whole number of rotated log files",
    "max_memory": 'a size such as "512M" or "2G", or a number of bytes',
    "max_open_files": "a whole number of open files",
    "max_cpu_seconds": 'a duration such as "90s", "2m", "1h", or a number of seconds',
    "allow_unmetered": "true or false",
}


class AgentSpec(msgspec.Struct, frozen=True, kw_only=True):
    """An entry resolved: what the start request will carry, with absolute paths, defaults
    filled in and units converted. Its canonical JSON is what the digest covers, so two
    ways of writing the same thing (`budget = 5` and `5.0`, `restart` left out and
    `"no"`) are the same spec."""

    command: list[str]
    cwd: str
    env: dict[str, str]
    #: The entry's interpreter; None: the caller's (left out of the digest on purpose, so
    #: running `up` from another virtualenv does not restart every agent).
    python: str | None
    budget: float | None
    project: str | None
    restart: RestartPolicy
    max_restarts: int | None
    min_uptime_s: float
    on_budget: OnBudget
    pii: PiiMode
    rpm: int | None
    tpm: int | None
    log_max_bytes: int | None
    log_keep: int | None
    allow_unmetered: bool
    max_memory_bytes: int | None = None
    max_open_files: int | None = None
    max_cpu_seconds: int | None = None
    env_files: list[str] = []
    #: The selection as the API's map (upper-case names), so its spellings digest alike.
    pii_types: dict[str, PiiMode] | None = None
    pii_file: str | None = None

    def digest(self) -> str:
        spec = msgspec.to_builtins(self)
        # Keys added after the first release count only when set, so an entry that does
        # not use them keeps its digest (`up` after an upgrade restarts nothing).
        for key in _LATER_KEYS:
            if spec.get(key) in (None, []):
                spec.pop(key, None)
        canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        import hashlib  # here, not at the top: `ironrt --help` imports this module

        return hashlib.sha256(canonical.encode()).hexdigest()


_LATER_KEYS = (
    "max_memory_bytes",
    "max_open_files",
    "max_cpu_seconds",
    "env_files",
    "pii_types",
    "pii_file",
)


class App(msgspec.Struct, frozen=True):
    """An entry ready to start: its name (the table's key), spec and digest."""

    name: str
    spec: AgentSpec
    digest: str


# ---- units: an entry's values as the spec carries them ------------------------------------
# Used both to check an entry (a ValueError is a bad value) and to resolve it, so the two
# cannot disagree on what a value means.


def min_uptime_s(value: str | float) -> float:
    """`min_uptime` in seconds: a duration ("5s") or a number of seconds."""
    if isinstance(value, str):
        return parse_uptime(value)
    if not 0 <= value <= MAX_MIN_UPTIME_S:
        raise ValueError(f"must be between 0 and {MAX_MIN_UPTIME_S:.0f} seconds")
    return float(value)


def log_max_bytes(value: str | int | None) -> int | None:
    """`log_max_size` in bytes: a size ("10MB") or a number of bytes; None: the daemon's."""
    return None if value is None else parse_size(str(value))


def memory_bytes(value: str | int | None) -> int | None:
    """`max_memory` in bytes: a size ("512M") or a number of bytes; None: no limit."""
    return None if value is None else parse_memory(str(value))


def cpu_seconds(value: str | int | None) -> int | None:
    """`max_cpu_seconds`: a duration ("2m") or a number of seconds; None: no limit."""
    if value is None:
        return None
    if isinstance(value, int):
        check_resource_limits(None, None, value)
        return value
    return parse_cpu_seconds(value)
