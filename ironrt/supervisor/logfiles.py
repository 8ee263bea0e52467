"""Per-agent log files, written by the agent directly and rotated by size.

The agent's stdout and stderr are one file descriptor opened with O_APPEND, handed to the
child at spawn: no pipe passes through the daemon, so a daemon restart never blocks or
kills an agent that is writing. Rotation is copy-then-truncate (as logrotate's
copytruncate): the child keeps its descriptor, and O_APPEND makes its next write land at
the new end of the truncated file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3


def log_path(logs_dir: Path, agent_id: str) -> Path:
    return logs_dir / f"{agent_id}.log"


def open_for_child(path: Path) -> int:
    """A write-only, append-mode descriptor for the child's stdout and stderr."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


def rotate_if_needed(
    path: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
) -> bool:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size <= max_bytes:
        return False
    for i in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{i + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with path.open("r+b") as fh:
        fh.truncate(0)
    return True


def remove_logs(path: Path, backups: int = DEFAULT_BACKUPS) -> None:
    for candidate in [path, *(path.with_name(f"{path.name}.{i}") for i in range(1, backups + 2))]:
        candidate.unlink(missing_ok=True)


def tail_lines(path: Path, lines: int, chunk: int = 64 * 1024) -> tuple[bytes, int]:
    """The last `lines` lines of the file and the offset where the file ends now."""
    try:
        with path.open("rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            pos, data = end, b""
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(chunk, pos)
                pos -= step
                fh.seek(pos)
                data = fh.read(step) + data
    except FileNotFoundError:
        return b"", 0
    if lines <= 0:
        return b"", end
    parts = data.split(b"\n")
    if data.endswith(b"\n"):
        parts = parts[:-1]
    text = b"\n".join(parts[-lines:])
    return (text + b"\n" if text else b""), end


def read_from(path: Path, offset: int, limit: int = 256 * 1024) -> Iterator[tuple[bytes, int]]:
    """New bytes since `offset`; restarts from 0 when the file was truncated by rotation."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size < offset:
        offset = 0
    if size == offset:
        return
    with path.open("rb") as fh:
        fh.seek(offset)
        while True:
            data = fh.read(limit)
            if not data:
                return
            offset += len(data)
            yield data, offset
