"""Finding, reading, checking and resolving an apps file, all before the daemon is asked
anything: a typo must never leave half a fleet started.

Reading (`read_apps`) checks each entry on its own: types, unknown keys, values. Resolving
(`resolve_apps`) then checks it against the filesystem and the way the daemon will check
its start request. `down` needs only the first, so it works after the scripts were deleted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from ironrt.apps.problems import (
    AppsFileError,
    BadValue,
    about,
    plain,
    shown,
    split,
    toml_key,
    type_error,
    unknown_key,
)
from ironrt.apps.schema import (
    APPS_FILE,
    AgentEntry,
    AgentSpec,
    App,
    AppsFile,
    cpu_seconds,
    log_max_bytes,
    memory_bytes,
    min_uptime_s,
)
from ironrt.errors import StartFailed
from ironrt.protocol import StartRequest
from ironrt.suggest import closest
from ironrt.toml_files import load_toml
from ironrt.values import (
    MAX_COUNT,
    MAX_LOG_KEEP,
    check_agent_name,
    check_count,
    check_project,
    check_resource_limits,
    check_usd,
    parse_pii_types,
)

if TYPE_CHECKING:
    from ironrt.policies.pii_rules import RulesFiles

__all__ = ["find_file", "read_apps", "resolve_apps"]


def find_file(given: Path | None) -> Path:
    """FILE, or `ironrt.toml` in FILE if it is a folder, or in the current folder."""
    if given is None:
        path = Path(APPS_FILE)
        if not path.is_file():
            raise AppsFileError(
                f"no {APPS_FILE} in {Path.cwd()}: write one (see docs/apps.md) or name it, "
                "`ironrt up FILE`"
            )
        return path
    if given.is_dir():
        return given / APPS_FILE
    return given


def read_apps(path: Path) -> dict[str, AgentEntry]:
    """The file's entries by name, in the file's order, each checked on its own (types,
    unknown keys, values) but not against the filesystem: `down` needs only this, and must
    work after the scripts were deleted."""
    try:
        raw = load_toml(path)
    except FileNotFoundError:
        raise AppsFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AppsFileError(f"{path}: is a folder, not an apps file") from None
    except OSError as exc:
        raise AppsFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:  # TOMLDecodeError, and bytes that are not UTF-8
        raise AppsFileError(f"{path}: not valid TOML: {exc}") from None
    try:
        top = msgspec.convert(raw, AppsFile)
    except msgspec.ValidationError as exc:
        message, _ = split(str(exc))
        unknown = unknown_key(message)
        if unknown is not None:
            hint = " (did you mean `agents`?)" if closest(unknown, ["agents"]) else ""
            raise AppsFileError(
                f"{path}: unknown key `{unknown}`{hint}: an apps file holds [agents.NAME] "
                "tables only"
            ) from None
        raise AppsFileError(f"{path}: agents: expected [agents.NAME] tables") from None
    if not top.agents:
        raise AppsFileError(f"{path}: declares no agents: add an [agents.NAME] table")
    entries: dict[str, AgentEntry] = {}
    for name, table in top.agents.items():
        where = f"agents.{toml_key(name)}"
        if not isinstance(table, dict):
            raise AppsFileError(f"{path}: {where}: expected a table [{where}], got {shown(table)}")
        try:
            check_agent_name(name)
        except ValueError as exc:
            reason = plain(exc).removeprefix("`name`: ")
            raise AppsFileError(f"{path}: {where}: bad agent name: {reason}") from None
        try:
            entry = msgspec.convert(table, AgentEntry)
        except msgspec.ValidationError as exc:
            raise AppsFileError(f"{path}: {type_error(where, table, str(exc))}") from None
        try:
            _check_entry(entry)
        except BadValue as exc:
            raise AppsFileError(f"{path}: {where}{exc.key}: {exc.message}") from None
        entries[name] = entry
    return entries


def resolve_apps(
    path: Path, entries: dict[str, AgentEntry], *, home_pii: Path | None = None
) -> list[App]:
    """Every entry resolved against the file's folder and checked the way the daemon will
    check its start request (same code), so that nothing is started unless all can be.

    `home_pii`: the daemon's home `pii.toml`, whose entities are PII types an entry may
    name (None: the built-in types and the entry's own `pii_file`'s)."""
    base = path.resolve().parent
    pii = _PiiCheck(home_pii)
    apps = []
    for name, entry in entries.items():
        where = f"agents.{toml_key(name)}"
        try:
            spec = _resolve(name, entry, base)
            pii.check(spec)
        except BadValue as exc:
            raise AppsFileError(f"{path}: {where}{exc.key}: {exc.message}") from None
        apps.append(App(name, spec, spec.digest()))
    return apps


class _PiiCheck:
    """The daemon's check of an agent's PII types and file (`RulesFiles.check_types`),
    made once the first entry needs it: the detectors are not loaded for a file that
    names no PII type."""

    def __init__(self, home_pii: Path | None) -> None:
        self.home_pii = home_pii
        self.rules: RulesFiles | None = None

    def check(self, spec: AgentSpec) -> None:
        if spec.pii_file is not None and not Path(spec.pii_file).is_file():
            raise BadValue("pii_file", f"no such file: {spec.pii_file}")
        if spec.pii_types is None and spec.pii_file is None:
            return
        from ironrt.pii.entities import EntityError
        from ironrt.policies.pii_rules import RulesFiles

        if self.rules is None:
            try:
                self.rules = RulesFiles(self.home_pii)
            except EntityError as exc:  # the daemon would not start with it either
                raise AppsFileError(plain(exc)) from None
        try:
            self.rules.check_types(spec.pii_types, spec.pii_file)
        except EntityError as exc:
            raise BadValue("pii_file", plain(exc)) from None
        except ValueError as exc:
            raise BadValue("pii_types", plain(exc).removeprefix("`pii_types`: ")) from None


def _check_entry(e: AgentEntry) -> None:
    if e.script is not None and e.command is not None:
        raise BadValue("", "give `script` or `command`, not both")
    if e.script is None and e.command is None:
        raise BadValue("", "needs `script` (a file) or `command` (a program and its arguments)")
    if e.script is not None and not e.script.strip():
        raise BadValue("script", "must not be empty")
    if e.command is not None and (not e.command or not e.command[0].strip()):
        raise BadValue("command", 'must name a program: command = ["node", "agent.js"]')
    if e.python is not None and not e.python.strip():
        raise BadValue("python", "must not be empty")
    with about("budget"):
        if e.budget is not None:
            check_usd("budget", e.budget)
    with about("project"):
        if e.project is not None:
            check_project(e.project)
    with about("min_uptime"):
        min_uptime_s(e.min_uptime)
    with about("rpm"):
        if e.rpm is not None:
            check_count("rpm", e.rpm)
    with about("tpm"):
        if e.tpm is not None:
            check_count("tpm", e.tpm)
    with about("log_max_size"):
        log_max_bytes(e.log_max_size)
    with about("max_memory"):
        memory_bytes(e.max_memory)
    with about("max_open_files"):
        check_resource_limits(None, e.max_open_files, None)
    with about("max_cpu_seconds"):
        cpu_seconds(e.max_cpu_seconds)
    if e.pii_types is not None:
        try:
            parse_pii_types(e.pii_types, e.pii)
        except ValueError as exc:
            raise BadValue("pii_types", plain(exc).removeprefix("`pii_types`: ")) from None
    if e.pii_file is not None and not e.pii_file.strip():
        raise BadValue("pii_file", "must not be empty")
    if isinstance(e.max_restarts, int) and not 0 <= e.max_restarts <= MAX_COUNT:
        raise BadValue("max_restarts", f'must be between 0 and {MAX_COUNT}, or "unlimited"')
    if e.log_keep is not None and not 1 <= e.log_keep <= MAX_LOG_KEEP:
        raise BadValue("log_keep", f"must be between 1 and {MAX_LOG_KEEP}")
    for name in e.env:
        if not name or "=" in name or "\x00" in name:
            raise BadValue(f"env.{toml_key(name)}", "not a variable name (empty, or has '=')")


def _resolve(name: str, e: AgentEntry, base: Path) -> AgentSpec:
    cwd = _path(base, e.cwd) if e.cwd is not None else base
    if not cwd.is_dir():
        raise BadValue("cwd", f"no such folder: {cwd}")
    if e.script is not None:
        script = _path(base, e.script)
        if not script.is_file():
            raise BadValue("script", f"no such file: {script}")
        command = [str(script), *e.args]
    else:
        assert e.command is not None
        # A program and its arguments, run in `cwd` as a shell would run them there.
        command = [*e.command, *e.args]
    python = None
    if e.python is not None:
        python = _program(base, e.python)
    spec = AgentSpec(
        command=command,
        cwd=str(cwd),
        env=dict(e.env),
        python=python,
        budget=e.budget,
        project=e.project,
        restart=e.restart,
        max_restarts=None if e.max_restarts == "unlimited" else e.max_restarts,
        min_uptime_s=min_uptime_s(e.min_uptime),
        on_budget=e.on_budget,
        pii=e.pii,
        rpm=e.rpm,
        tpm=e.tpm,
        log_max_bytes=log_max_bytes(e.log_max_size),
        log_keep=e.log_keep,
        allow_unmetered=e.allow_unmetered,
        max_memory_bytes=memory_bytes(e.max_memory),
        max_open_files=e.max_open_files,
        max_cpu_seconds=cpu_seconds(e.max_cpu_seconds),
        env_files=[str(_path(base, f)) for f in e.env_files],
        pii_types=None if e.pii_types is None else parse_pii_types(e.pii_types, e.pii),
        pii_file=None if e.pii_file is None else str(_path(base, e.pii_file)),
    )
    _check_like_the_daemon(name, spec, "script" if e.script is not None else "command")
    return spec


def _path(base: Path, text: str) -> Path:
    return Path(os.path.normpath(base / Path(text).expanduser()))


def _program(base: Path, text: str) -> str:
    """`python`: a path (relative to the file's folder) or a name looked up on PATH."""
    if "/" in text or text.startswith("~"):
        found = _path(base, text)
        if not found.is_file() or not os.access(found, os.X_OK):
            raise BadValue("python", f"not an executable file: {found}")
        return str(found)
    if shutil.which(text) is None:
        raise BadValue("python", f"not found on PATH: {text}")
    return text


def _check_like_the_daemon(name: str, spec: AgentSpec, program_key: str) -> None:
    """The checks the daemon runs on a start request (a script that is missing or not
    executable, a program not on PATH, bytes the OS refuses), run here on every entry
    before anything starts. The daemon runs them again; this is for the all-or-nothing."""
    from ironrt.supervisor.commands import resolve_command
    from ironrt.supervisor.envfiles import EnvFileError, check_env_file

    try:
        req = StartRequest(
            command=spec.command,
            cwd=spec.cwd,
            env=dict(os.environ),
            env_overrides=spec.env,
            name=name,
            python=spec.python,
        )
        resolve_command(req)
        for path in spec.env_files:
            check_env_file(path)
    except EnvFileError as exc:
        raise BadValue("env_files", plain(exc)) from None
    except StartFailed as exc:
        key = {"command": program_key, "cwd": "cwd", "python": "python", "name": ""}
        message = plain(exc).replace("`env_overrides`", "`env`")
        raise BadValue(key.get(exc.field or "", "env"), message) from None
    except ValueError as exc:
        raise BadValue("", plain(exc)) from None
