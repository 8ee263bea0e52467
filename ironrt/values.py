"""The values the control API accepts, and how each is written, parsed and checked:
budgets, counts, windows and durations, sizes, names, resource limits.

Apart from the messages (`ironrt.protocol`) so that both, and the CLI, the apps file and
the settings, share one definition of each range without one module of everything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

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
    if "/" in name:
        # A name is a path segment of the control API (/v1/agents/NAME): one with a '/'
        # could be started, and then never addressed again.
        raise ValueError(f"`name`: {name!r} has a '/', which a name cannot have")


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


# ---- PII: which types an agent or a scope acts on, and how -------------------------------
#: What may be done with a type's findings, weakest first: a scope's setting can only make
#: an agent's stricter (`strictest`).
PII_ACTIONS = ("off", "detect", "redact", "block")
#: Memory for the findings of texts scanned lately (`IRONRT_PII_RECALL_SIZE`, ironrt/pii/recall.py).
DEFAULT_PII_RECALL_BYTES = 4 * 1024 * 1024
#: Regions whose national phone formats are read unless `IRONRT_PII_REGIONS` says others.
DEFAULT_PII_REGIONS = ("US", "CA", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "AU", "JP", "BR")
#: The built-in types; a custom entity from `pii.toml` adds its own name.
BUILTIN_PII_TYPES = ("EMAIL", "PHONE", "CARD", "SSN", "IBAN", "IP", "SECRET")
#: A type name as placeholders spell it (`[EMPLOYEE_ID_1]`), or `*` for every other type.
_PII_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,23}|\*")
MAX_PII_TYPES = 256


def check_pii_types(types: Mapping[str, str]) -> dict[str, Any]:
    """`{type: action}` with type names upper-cased; an invalid name or action is an error.

    Whether a name is known (built-in or a custom entity of the agent's `pii.toml`) is
    checked where the entities are known: the daemon.
    """
    if len(types) > MAX_PII_TYPES:
        raise ValueError(f"`pii_types`: at most {MAX_PII_TYPES} entries")
    out: dict[str, Any] = {}
    for name, action in types.items():
        key = name.strip().upper()
        if not _PII_TYPE.fullmatch(key):
            raise ValueError(
                f"`pii_types`: {name!r} is not a PII type name (EMAIL, PHONE, ..., a custom "
                "entity's name, or * for every other type)"
            )
        if action not in PII_ACTIONS:
            raise ValueError(
                f"`pii_types`: {name}={action!r}: the action must be one of "
                f"{', '.join(PII_ACTIONS)}"
            )
        out[key] = action
    return out


def parse_pii_types(spec: str | list[str] | Mapping[str, str], mode: str) -> dict[str, Any]:
    """The CLI's and the apps file's forms of a type selection, as the API's map.

    - `"email,phone"` (or a list): these types get `mode` (`--pii`), every other type is off;
    - `"email=redact,secret=block"`: these types get their own action, others follow `mode`;
    - both mixed (`"email,secret=block"`): as soon as a bare name selects, others are off;
    - `"*=off"` says what every unnamed type gets explicitly.
    """
    if isinstance(spec, Mapping):
        return check_pii_types(spec)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: dict[str, str] = {}
    selects = False
    for item in items:
        item = item.strip()
        if not item:
            continue
        name, eq, action = item.partition("=")
        if eq:
            out[name.strip()] = action.strip().lower()
        else:
            out[name] = mode
            selects = True
    if not out:
        raise ValueError("`pii_types`: name at least one type (email, phone, card, ...)")
    checked = check_pii_types(out)
    if selects:
        checked.setdefault("*", "off")
    return checked


def pii_action(type_: str, mode: str, types: Mapping[str, str] | None) -> str:
    """What is done with findings of `type_` under `mode` (`--pii`) and `types`."""
    if types is None:
        return mode
    return types.get(type_, types.get("*", mode))


def strictest(a: str, b: str) -> str:
    """The stricter of two actions (`off` < `detect` < `redact` < `block`)."""
    return a if PII_ACTIONS.index(a) >= PII_ACTIONS.index(b) else b
