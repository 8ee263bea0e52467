"""What to execute for a start request, checked before anything is recorded or spawned.

A `.py` script runs with the caller's Python; a path must exist and be executable; a bare
name must be on the caller's PATH. Each failure is a StartFailed naming what is wrong, so
the user gets a clear error instead of an agent record that failed silently.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ironrt.errors import StartFailed
from ironrt.protocol import StartRequest
from ironrt.supervisor.environment import refused_override

_INTERPRETERS = frozenset({"python", "python3", "node", "bash", "sh", "uv", "env"})


def check_os_strings(req: StartRequest) -> None:
    """What execve and chdir would refuse, refused first (422 naming the field), so a
    request that cannot start leaves no record behind."""
    texts = [("command", part) for part in req.command]
    texts += [("cwd", req.cwd), ("name", req.name or ""), ("python", req.python or "")]
    for field, text in texts:
        if "\x00" in text:
            raise StartFailed(f"`{field}` has a NUL byte, which no program accepts", field=field)
    for field, env in (("env", req.env), ("env_overrides", req.env_overrides)):
        for key, value in env.items():
            if not key or "=" in key or "\x00" in key:
                raise StartFailed(
                    f"`{field}`: {key!r} is not a variable name (empty, or contains '=' or NUL)",
                    field=field,
                )
            if "\x00" in value:
                raise StartFailed(f"`{field}`: the value of {key!r} has a NUL byte", field=field)
    for key in req.env_overrides:
        # The caller's own environment (`env`) is scrubbed as a whole; what it asks for by
        # name (`--env`) is refused rather than dropped or overwritten without a word.
        why = refused_override(key)
        if why is not None:
            raise StartFailed(why, field="env_overrides")


def resolve_command(req: StartRequest) -> list[str]:
    """The argv to execute, or StartFailed saying clearly why there is none."""
    check_os_strings(req)
    program, *args = req.command
    path_env = req.env.get("PATH", os.environ.get("PATH", ""))
    if req.python:
        _check_python(req.python, req.cwd, path_env)
    if program.endswith(".py"):
        script = Path(req.cwd, program)
        if not script.is_file():
            raise StartFailed(f"no such script: {script}", field="command")
        python = req.python or sys.executable
        return [python, program, *args]
    if os.sep in program:
        target = Path(req.cwd, program)
        if not target.exists():
            raise StartFailed(f"no such file: {target}", field="command")
        if target.is_dir() or not os.access(target, os.X_OK):
            raise StartFailed(
                f"not executable: {target} (chmod +x it, or name an interpreter)",
                field="command",
            )
        return [program, *args]
    if shutil.which(program, path=path_env) is None:
        raise StartFailed(f"program not found on PATH: {program}", field="command")
    return [program, *args]


def _check_python(python: str, cwd: str, path_env: str) -> None:
    """The interpreter a `.py` agent is to run with exists and can run (else the agent
    would be recorded, started, and end at once with exit 127)."""
    if os.sep in python:
        target = Path(cwd, python)
        if not target.is_file() or not os.access(target, os.X_OK):
            raise StartFailed(f"`python`: not an executable file: {target}", field="python")
    elif shutil.which(python, path=path_env) is None:
        raise StartFailed(f"`python`: not found on PATH: {python}", field="python")


def default_name(command: list[str]) -> str:
    """A name for an agent started without --name: its script's or program's stem."""
    for part in command:
        stem = Path(part).stem
        named = part.endswith(".py") or ("/" not in part and not part.startswith("-"))
        if named and stem not in _INTERPRETERS:
            return stem or "agent"
    return Path(command[0]).stem or "agent"
