"""Per-agent log files: where they live, their tail, and following them across rotations.

The log relay (`logrelay.py`) writes them and rotates by rename, exactly when the next
line would not fit: `ID.log` is the live file, `ID.log.1` the newest rotated one, up to
`ID.log.K`. Nothing here writes a log; this is the reading side, which must cope with a
rotation happening between any two of its system calls. It does so by following files by
inode, not by name: a file keeps its inode when it is renamed, and the relay never writes
to a file again once it has renamed it.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ironrt.values import DEFAULT_LOG_KEEP

MIN_SIZE = 1024
MAX_SIZE = 1024**4
#: Bytes `Follower.read_new` returns at most per call.
READ_LIMIT = 256 * 1024

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*", re.IGNORECASE)


def log_path(logs_dir: Path, agent_id: str) -> Path:
    return logs_dir / f"{agent_id}.log"


def rotated(path: Path, keep: int) -> list[Path]:
    """The rotated files' names, newest first: path.1 .. path.K."""
    return [path.with_name(f"{path.name}.{i}") for i in range(1, keep + 1)]


def remove_logs(path: Path, keep: int = DEFAULT_LOG_KEEP) -> None:
    """Remove the live file and every rotated one (also past `keep`, if it was larger)."""
    path.unlink(missing_ok=True)
    i = 1
    while i <= keep or path.with_name(f"{path.name}.{i}").exists():
        path.with_name(f"{path.name}.{i}").unlink(missing_ok=True)
        i += 1


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader stands: a file (by inode; 0 = no file yet) and an offset in it."""

    inode: int
    offset: int


def tail_lines(
    path: Path, lines: int, keep: int = DEFAULT_LOG_KEEP, chunk: int = 64 * 1024
) -> tuple[bytes, Position]:
    """The last `lines` lines across the live file and its rotated ones (oldest last), and
    the position right after them, for a Follower to continue from.

    The live file is opened first and its size taken then: the tail ends exactly at the
    position returned, whatever the relay writes meanwhile.
    """
    fd = _open(path)
    if fd is None:
        position, data = Position(0, 0), b""
    else:
        try:
            st = os.fstat(fd)
            position = Position(st.st_ino, st.st_size)
            data = _tail_bytes(fd, st.st_size, lines, chunk, b"") if lines > 0 else b""
        finally:
            os.close(fd)
    if lines <= 0:
        return b"", position
    for older in rotated(path, keep):
        if data.count(b"\n") > lines:
            break
        data = _tail_of_file(older, lines, chunk, data)
    return _last_lines(data, lines), position


def _tail_of_file(path: Path, lines: int, chunk: int, after: bytes) -> bytes:
    fd = _open(path)
    if fd is None:
        return after
    try:
        return _tail_bytes(fd, os.fstat(fd).st_size, lines, chunk, after)
    finally:
        os.close(fd)


def _tail_bytes(fd: int, end: int, lines: int, chunk: int, after: bytes) -> bytes:
    """Read backwards from `end` until `after` is preceded by more than `lines` newlines."""
    pos, data = end, after
    while pos > 0 and data.count(b"\n") <= lines:
        step = min(chunk, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
    return data


def _last_lines(data: bytes, lines: int) -> bytes:
    parts = data.split(b"\n")
    if data.endswith(b"\n"):
        parts = parts[:-1]
    text = b"\n".join(parts[-lines:])
    return text + b"\n" if text else b""


def _open(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return 0


class Follower:
    """Reads what gets appended to a log, across rotations, never missing or repeating.

    It holds the file it reads open (descriptor + inode). At the end of that file it checks
    whether the live name still points to it. If not, the file was rotated away: since the
    relay never writes to a file after renaming it, the follower reads it to its end, then
    moves to the file that replaced it (the next newer name) from offset 0. A follower
    more than `keep` rotations behind has lost the files between: it goes on with the
    oldest still there.
    """

    def __init__(
        self,
        path: Path,
        position: Position = Position(0, 0),
        keep: int = DEFAULT_LOG_KEEP,
        limit: int = READ_LIMIT,
    ) -> None:
        self.path = path
        self._names = [path, *rotated(path, keep)]
        self._limit = limit
        self._fd: int | None = None
        self._inode = 0
        if position.inode:
            self._start_at(position)

    def read_new(self) -> bytes:
        """New bytes (at most `limit`); b"" when there is nothing new for now."""
        if self._fd is None and not self._switch_to(self.path):
            return b""
        assert self._fd is not None
        data = os.read(self._fd, self._limit)
        if data or _inode(self.path) == self._inode:
            return data
        data = os.read(self._fd, self._limit)  # what was written just before the rename
        if data or not self._advance():
            return data
        return os.read(self._fd, self._limit)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Follower:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start_at(self, position: Position) -> None:
        """Open the file the position names, wherever rotation has moved it since."""
        for name in self._names:
            if _inode(name) == position.inode and self._switch_to(name, position.inode):
                assert self._fd is not None
                os.lseek(self._fd, position.offset, os.SEEK_SET)
                return
        self._switch_to_oldest()

    def _advance(self) -> bool:
        """Move to the file that replaced ours; False if it is not there yet."""
        for _ in range(3):
            index = self._index_of(self._inode)
            if index is None:
                return self._switch_to_oldest()
            if index == 0:
                return False
            newer = _open(self._names[index - 1])
            if newer is None:
                return False  # mid-rotation: the newer name is not there yet
            if _inode(self._names[index]) == self._inode:
                self._replace(newer)  # nothing moved between finding ours and opening it
                return True
            os.close(newer)
        return False

    def _index_of(self, inode: int) -> int | None:
        for i, name in enumerate(self._names):
            if _inode(name) == inode:
                return i
        return None

    def _switch_to_oldest(self) -> bool:
        return any(self._switch_to(name) for name in reversed(self._names))

    def _switch_to(self, name: Path, inode: int = 0) -> bool:
        """Read `name` from its start from now on (only if it has `inode`, when given)."""
        fd = _open(name)
        if fd is None:
            return False
        if inode and os.fstat(fd).st_ino != inode:
            os.close(fd)
            return False
        self._replace(fd)
        return True

    def _replace(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            if self._fd is not None:
                os.close(self._fd)
        self._fd = fd
        self._inode = os.fstat(fd).st_ino
