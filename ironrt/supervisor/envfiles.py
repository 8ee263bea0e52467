"""`--env-file`: variables an agent gets from a file read at each start, never stored.

What `ironrt start` is given in its environment (and `--env`) is stored in the daemon's
database, so that a restart after a reboot runs the agent as it was started. Secrets an
agent needs (a database password, a cloud key) belong in a file instead: the database
keeps only the file's path, and the daemon reads the file each time it starts the agent,
so a rotated secret takes effect at the next restart and the database never holds it.

The format is dotenv's (python-dotenv parses it: `KEY=value`, quotes, `export KEY=...`,
comments). No `${VAR}` interpolation: a value is what the file says, never a variable of
the daemon's own environment.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from ironrt.errors import EnvFileError as EnvFileError  # defined there, re-exported

__all__ = ["EnvFileError", "check_env_file", "read_env_files"]

#: A file bigger than this is no environment file (a typo naming a log or a binary).
MAX_ENV_FILE_BYTES = 1 << 20


def check_env_file(path: str) -> None:
    """Refuse a file that could not be read at start: says why in one line."""
    if not os.path.isabs(path):
        raise EnvFileError(f"env file {path!r} must be an absolute path")
    try:
        info = os.stat(path)
    except OSError as exc:
        raise EnvFileError(f"env file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise EnvFileError(f"env file {path} is not a regular file")
    if info.st_size > MAX_ENV_FILE_BYTES:
        raise EnvFileError(f"env file {path} is larger than 1 MiB: is it the right file?")
    if not os.access(path, os.R_OK):
        raise EnvFileError(f"env file {path} is not readable by the daemon's user")


def read_env_files(paths: Iterable[str]) -> dict[str, str]:
    """The variables of the files, later files overriding earlier ones."""
    from dotenv.parser import parse_stream  # only agents started with --env-file pay it

    merged: dict[str, str] = {}
    for path in paths:
        check_env_file(path)
        try:
            with open(path, encoding="utf-8") as fh:
                bindings = list(parse_stream(fh))
        except (OSError, UnicodeDecodeError) as exc:
            raise EnvFileError(f"env file {path}: {exc}") from None
        for binding in bindings:
            line = binding.original.line
            if binding.error:
                raise EnvFileError(f"env file {path}, line {line}: not KEY=value")
            key, value = binding.key, binding.value
            if key is None:
                continue  # a blank or comment line
            if not key or "=" in key or "\0" in key or (value is not None and "\0" in value):
                raise EnvFileError(f"env file {path}, line {line}: {key!r} is no variable name")
            if value is not None:  # a bare `KEY` line sets nothing
                merged[key] = value
    return merged
