"""The bodies of client requests, built from a caller's arguments and checked before
anything is sent.

A keyword argument the method does not take raises `TypeError` (as it would for a function
that spells out its parameters), a bad value `InvalidRequest` in the daemon's own wording:
each body is built as the protocol Struct the daemon decodes it to, so the checks are the
daemon's. Both client twins send these bytes through `ironrt.client_requests`; nothing
here does I/O.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import msgspec

from ironrt.errors import InvalidRequest
from ironrt.protocol import (
    LIMIT_FIELDS,
    LimitsUpdate,
    OnBudget,
    PiiMode,
    RestartPolicy,
    StartRequest,
    UpdateRequest,
)
from ironrt.values import DEFAULT_MAX_RESTARTS, DEFAULT_MIN_UPTIME_S, check_project

__all__ = [
    "START_OPTIONS",
    "UPDATE_FIELDS",
    "StartOptions",
    "checked_project",
    "default_python",
    "given",
    "limits_body",
    "refuse_unknown",
    "start_body",
    "unset_changes",
    "update_body",
]


class StartOptions(TypedDict, total=False):
    """How to run an agent: the keyword arguments of `start_agent` (sync and async)."""

    name: str | None
    budget: float | None
    env: Mapping[str, str] | None
    #: dotenv files the daemon reads at each start of the agent (relative paths: to this
    #: process's directory). Their values are never stored: the place for secrets.
    env_files: Sequence[str] | None
    restart: RestartPolicy
    #: Consecutive unstable restarts before giving up; None: unlimited.
    max_restarts: int | None
    #: Seconds a run must last to count as stable (resets the unstable count).
    min_uptime: float
    #: Log rotation: bytes per file (default: the daemon's, 10 MiB) and files kept.
    log_max_size: int | None
    log_keep: int | None
    #: Restart the agent when its process tree's RSS exceeds this many bytes (PM2's
    #: `max_memory_restart`); None: no limit.
    max_memory: int | None
    #: RLIMIT_NOFILE (soft and hard) of each of its processes; None: the daemon's.
    max_open_files: int | None
    #: RLIMIT_CPU in seconds of each of its processes (SIGXCPU, then SIGKILL); None: none.
    max_cpu_seconds: int | None
    #: Digest of the apps-file entry the agent comes from (`ironrt up` sets it).
    spec_digest: str | None
    cwd: str | None
    on_budget: OnBudget
    pii: PiiMode
    rpm: int | None
    tpm: int | None
    allow_unmetered: bool
    python: str | None
    #: Send this process's environment as the agent's base environment (default True).
    inherit_env: bool
    #: The project whose limits the agent's calls must also fit (default: the client's).
    project: str | None


#: Every keyword `start_agent` takes: anything else is a typo, refused before sending.
START_OPTIONS = frozenset(StartOptions.__annotations__)
#: Every keyword `update_agent` takes: the fields the daemon lets change on a live agent.
UPDATE_FIELDS = frozenset(UpdateRequest.__struct_fields__)


def refuse_unknown(function: str, keywords: Iterable[str], known: Collection[str]) -> None:
    """Raise `TypeError` for a keyword argument `function` does not take, as Python does
    for a function that spells out its parameters.

    `**options` checked only by a type checker would let a typo (`budgt=5`) through at run
    time, and the agent would start without the budget it was meant to have: a refusal,
    with the closest known name as a hint, is the only safe answer."""
    unknown = [k for k in keywords if k not in known]
    if not unknown:
        return
    import difflib  # only on the error path: the CLI's start-up stays light

    message = f"{function}() got an unexpected keyword argument {unknown[0]!r}"
    close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    raise TypeError(message)


def start_body(
    path: str | Sequence[str],
    args: Sequence[str],
    default_budget: float | None,
    o: StartOptions,
    default_project: str | None = None,
) -> bytes:
    """The `StartRequest` for `start_agent`: the caller's environment, directory and Python
    unless `o` says otherwise, and the client's budget and project as defaults."""
    refuse_unknown("start_agent", o, START_OPTIONS)
    if isinstance(args, str):  # a lone string would run as one argument per character
        raise TypeError(f"start_agent() `args` is a sequence of strings, not {args!r}")
    command = [path] if isinstance(path, str) else list(path)
    command = [str(c) for c in command] + [str(a) for a in args]
    base = dict(os.environ) if o.get("inherit_env", True) else {}
    budget = o.get("budget")
    project = o.get("project")
    env_files = _absolute(o.get("env_files"))
    try:
        req = StartRequest(
            command=command,
            cwd=o.get("cwd") or os.getcwd(),
            env=base,
            env_overrides=dict(o.get("env") or {}),
            env_files=env_files,
            name=o.get("name"),
            budget_usd=default_budget if budget is None else budget,
            restart=o.get("restart", "no"),
            max_restarts=o.get("max_restarts", DEFAULT_MAX_RESTARTS),
            min_uptime_s=o.get("min_uptime", DEFAULT_MIN_UPTIME_S),
            log_max_bytes=o.get("log_max_size"),
            log_keep=o.get("log_keep"),
            max_memory_bytes=o.get("max_memory"),
            max_open_files=o.get("max_open_files"),
            max_cpu_seconds=o.get("max_cpu_seconds"),
            spec_digest=o.get("spec_digest"),
            on_budget=o.get("on_budget", "block"),
            pii=o.get("pii", "detect"),
            rpm=o.get("rpm"),
            tpm=o.get("tpm"),
            allow_unmetered=o.get("allow_unmetered", False),
            python=o.get("python") or default_python(),
            project=default_project if project is None else project,
        )
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(str(exc)) from None
    return msgspec.json.encode(req)


def _absolute(paths: Sequence[str] | None) -> list[str]:
    if isinstance(paths, str):  # one path, not one file per character
        raise TypeError(f"start_agent() `env_files` is a sequence of paths, not {paths!r}")
    return [os.path.abspath(os.fspath(p)) for p in paths or ()]


def update_body(changes: Mapping[str, object]) -> bytes:
    """A PATCH body for an agent: an unknown field raises TypeError (a typo must not reach
    the daemon as a vague refusal), a bad value InvalidRequest, before anything is sent."""
    refuse_unknown("update_agent", changes, UPDATE_FIELDS)
    try:
        return msgspec.json.encode(UpdateRequest(**changes))  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(str(exc)) from None


def checked_project(project: str | None) -> str | None:
    """A client-wide default project, checked once rather than on every start."""
    if project is not None:
        try:
            check_project(project)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
    return project


def limits_body(changes: Mapping[str, Any]) -> bytes:
    """A `LimitsUpdate` body holding exactly `changes` (None clears a field).

    The changes go through the same JSON decoding the daemon does, so a wrong type (an
    rpm of `"10"`, a budget of `True`) or a bad value (window `5x`, budget -1) raises
    InvalidRequest here, before anything is sent, with the daemon's own wording."""
    if not changes:
        raise InvalidRequest("nothing to change: give at least one of " + ", ".join(LIMIT_FIELDS))
    try:
        update = msgspec.json.decode(msgspec.json.encode(dict(changes)), type=LimitsUpdate)
    except (msgspec.ValidationError, msgspec.DecodeError, msgspec.EncodeError, TypeError) as exc:
        raise InvalidRequest(str(exc)) from None
    return msgspec.json.encode(update)


def unset_changes(fields: Sequence[str]) -> dict[str, None]:
    """`{field: None}` for `unset_limits`, refusing names LimitsUpdate does not have (a
    typo must not look like success)."""
    unknown = [f for f in fields if f not in LIMIT_FIELDS]
    if unknown:
        raise InvalidRequest(
            f"unknown limit {unknown[0]!r}: the limits are " + ", ".join(LIMIT_FIELDS)
        )
    return dict.fromkeys(fields)


def given(**values: Any) -> dict[str, Any]:
    """The keyword arguments that were passed (UNSET ones left out)."""
    return {k: v for k, v in values.items() if v is not msgspec.UNSET}


def default_python() -> str:
    """The caller's Python: the active virtualenv's if there is one, else this one."""
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        candidate = Path(venv) / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return sys.executable
