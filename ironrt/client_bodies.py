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
from typing import Any, TypedDict, cast

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
from ironrt.validation_errors import split
from ironrt.values import (
    DEFAULT_MAX_RESTARTS,
    DEFAULT_MIN_UPTIME_S,
    PII_ACTIONS,
    check_project,
    parse_pii_types,
)

__all__ = [
    "START_OPTIONS",
    "UPDATE_FIELDS",
    "PiiTypes",
    "StartOptions",
    "checked_project",
    "default_python",
    "given",
    "limits_body",
    "pii_types_map",
    "refuse_unknown",
    "start_body",
    "unset_changes",
    "update_body",
    "wants_pii_mode",
]

#: A PII type selection as the clients take it: the API's map (`{"email": "redact"}`), or
#: the CLI's forms, a string (`"email,phone"`, `"email=redact,secret=block"`) or a list of
#: its items. A name without an action gets `pii`, and every type not named is then off.
PiiTypes = Mapping[str, str] | str | Sequence[str]


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
    #: Per type (see `PiiTypes`): `"email,secret=block"`, or `{"EMAIL": "redact"}`.
    pii_types: PiiTypes | None
    #: The agent's own `pii.toml` (relative: to this process's directory); its entities
    #: add to the home's. The daemon refuses a missing or invalid file.
    pii_file: str | os.PathLike[str] | None
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
    pii = o.get("pii", "detect")
    pii_types = pii_types_map(o.get("pii_types"), pii)
    pii_file = o.get("pii_file")
    cwd = o.get("cwd")
    fields = dict(
        command=command,
        cwd=os.fspath(cwd) if cwd else os.getcwd(),
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
        pii=pii,
        pii_types=pii_types,
        pii_file=None if pii_file is None else os.path.abspath(os.fspath(pii_file)),
        rpm=o.get("rpm"),
        tpm=o.get("tpm"),
        allow_unmetered=o.get("allow_unmetered", False),
        python=o.get("python") or default_python(),
        project=default_project if project is None else project,
    )
    try:
        # Converted, not constructed: each field's type is checked, so `budget="abc"` is
        # an error naming `budget`, not a comparison of a str deep in a check.
        req = msgspec.convert(fields, StartRequest)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(_named_as_options(str(exc))) from None
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(str(exc)) from None
    return msgspec.json.encode(req)


#: The option of `start_agent` behind each field of `StartRequest` named otherwise.
_OPTION_OF = {
    "budget_usd": "budget",
    "env_overrides": "env",
    "min_uptime_s": "min_uptime",
    "log_max_bytes": "log_max_size",
    "max_memory_bytes": "max_memory",
}


def _named_as_options(message: str) -> str:
    """msgspec's "Expected `int | null`, got `str` - at `$.log_max_bytes`" as
    "`log_max_size`: expected `int | null`, got `str`" (the caller's words)."""
    what, path = split(message)
    if not path:
        return message
    field = path.removeprefix(".").split(".")[0].split("[")[0]
    option = _OPTION_OF.get(field, field)
    return f"`{option}`: {what[:1].lower()}{what[1:]}"


def _absolute(paths: Sequence[str] | None) -> list[str]:
    if isinstance(paths, str):  # one path, not one file per character
        raise TypeError(f"start_agent() `env_files` is a sequence of paths, not {paths!r}")
    return [os.path.abspath(os.fspath(p)) for p in paths or ()]


def update_body(changes: Mapping[str, object], current_pii: str | None = None) -> bytes:
    """A PATCH body for an agent: an unknown field raises TypeError (a typo must not reach
    the daemon as a vague refusal), a bad value InvalidRequest, before anything is sent.
    A type named without an action in `pii_types` gets the `pii` of the same change, else
    `current_pii` (the agent's, which the client fetched: see `wants_pii_mode`)."""
    refuse_unknown("update_agent", changes, UPDATE_FIELDS)
    changes = _resolved_types(changes, current_pii)
    try:
        return msgspec.json.encode(UpdateRequest(**changes))
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


def limits_body(changes: Mapping[str, Any], current_pii: str | None = None) -> bytes:
    """A `LimitsUpdate` body holding exactly `changes` (None clears a field).

    The changes go through the same JSON decoding the daemon does, so a wrong type (an
    rpm of `"10"`, a budget of `True`) or a bad value (window `5x`, budget -1) raises
    InvalidRequest here, before anything is sent, with the daemon's own wording. A type
    named without an action in `pii_types` gets the `pii` of the same change, else
    `current_pii` (the scope's floor, fetched by the client)."""
    if not changes:
        raise InvalidRequest("nothing to change: give at least one of " + ", ".join(LIMIT_FIELDS))
    changes = _resolved_types(changes, current_pii)
    try:
        update = msgspec.json.decode(msgspec.json.encode(dict(changes)), type=LimitsUpdate)
    except (msgspec.ValidationError, msgspec.DecodeError, msgspec.EncodeError, TypeError) as exc:
        raise InvalidRequest(str(exc)) from None
    return msgspec.json.encode(update)


def pii_types_map(spec: PiiTypes | None, mode: str | None) -> dict[str, Any] | None:
    """`spec` (see `PiiTypes`) as the API's map, a name without an action getting `mode`
    (None stays None: every type follows `pii`). A bad name or action is InvalidRequest;
    whether a name is a type the agent's detectors know is the daemon's to say."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        names = spec.keys() if isinstance(spec, Mapping) else spec
        if not isinstance(spec, (Mapping, list, tuple)) or not all(
            isinstance(n, str) for n in names
        ):
            raise InvalidRequest(
                f"`pii_types` is a string, a list of strings or a mapping of type names to "
                f"actions, not {spec!r}",
                field="pii_types",
            )
        spec = spec if isinstance(spec, Mapping) else list(spec)
    if mode is None and _bare_names(spec):
        name = next(n for n in _items(spec) if "=" not in n)
        raise InvalidRequest(
            f"`pii_types`: {name.strip()!r} has no action: give `pii` (what the types named "
            f"get) or write one, e.g. {name.strip()}=block",
            field="pii_types",
        )
    if mode is not None and mode not in PII_ACTIONS:
        raise InvalidRequest(
            f"`pii` must be one of {', '.join(PII_ACTIONS)}, not {mode!r}", field="pii"
        )
    try:
        return parse_pii_types(spec, mode or "off")
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="pii_types") from None


def wants_pii_mode(function: str, changes: Mapping[str, object], known: Collection[str]) -> bool:
    """Whether `changes` name a PII type without an action and no `pii` to give it, so the
    client must first fetch the agent's (or scope's) current `pii`. A typo'd keyword or a
    malformed selection is refused here, before that request is made."""
    refuse_unknown(function, changes, known)
    spec = changes.get("pii_types")
    if spec is None or spec is msgspec.UNSET or "pii" in changes:
        return False
    selection = cast(PiiTypes, spec)
    pii_types_map(selection, "detect")  # its syntax, checked before anything is asked
    return _bare_names(selection)


def _items(spec: PiiTypes) -> list[str]:
    if isinstance(spec, Mapping):
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return [i for i in items if isinstance(i, str) and i.strip()]


def _bare_names(spec: PiiTypes) -> bool:
    return any("=" not in item for item in _items(spec))


def _resolved_types(changes: Mapping[str, Any], current_pii: str | None) -> dict[str, Any]:
    """`changes` with its `pii_types` (any `PiiTypes` form) as the API's map."""
    out = dict(changes)
    spec = out.get("pii_types")
    if spec is not None and spec is not msgspec.UNSET:
        pii = out.get("pii")
        out["pii_types"] = pii_types_map(spec, pii if isinstance(pii, str) else current_pii)
    return out


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
