"""Writing one agent log file, and rotating it by rename, for the log relay (`logrelay.py`).

Why the relay rotates by rename, itself: the process that writes a file is the only one
that can keep it under its size limit at every instant. Before each write it checks the
room left and rotates exactly when the next line would not fit, so a file never exceeds
`max_bytes` and an agent's logs never use more than (keep + 1) x max_bytes of disk.

Standard library only, and nothing from `ironrt`: the relay runs as a script by file path
and imports this module as a top-level one (see `logrelay.py`).
"""

from __future__ import annotations

import contextlib
import errno
import os

#: Errors that mean "no room": logged once, retried, never dropped.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def piece_length(data: bytes, start: int, room: int, empty: bool) -> int:
    """How many bytes of data[start:] go into a file with `room` bytes left; 0: rotate first.

    Whole lines when possible: everything if it fits, else up to the last newline that fits.
    A line longer than a whole file is cut at the limit rather than written over it.
    """
    left = len(data) - start
    if left <= room:
        return left
    cut = data.rfind(b"\n", start, start + room)
    if cut >= 0:
        return cut + 1 - start
    return room if empty else 0


class LogWriter:
    """One log file (and its rotated predecessors), shared by every stream writing to it.

    An agent restarted gets a new pipe while its old one may still be draining: both write
    through the same writer, so the size it tracks is the file's real size.
    """

    def __init__(self, path: str, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.refs = 0
        self.failing = False
        self._fd: int | None = None
        self._size = 0

    def write(self, data: bytes) -> tuple[int, OSError | None]:
        """Write as much of `data` as possible: (bytes written, the error that stopped it)."""
        done = 0
        try:
            while done < len(data):
                done += self._write_piece(data, done)
        except OSError as exc:
            return done, exc
        return done, None

    def close(self) -> None:
        if self._fd is not None:
            _close(self._fd)
            self._fd = None

    def _write_piece(self, data: bytes, start: int) -> int:
        fd = self._open()
        room = max(0, self.max_bytes - self._size)
        n = piece_length(data, start, room, empty=self._size == 0)
        if n == 0:
            self._rotate()
            return 0
        written = os.write(fd, memoryview(data)[start : start + n])
        self._size += written
        return written

    def _open(self) -> int:
        """The live file, opened (appending: an existing file's size counts) if need be."""
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            fd = os.open(self.path, flags, 0o600)
            try:
                os.fchmod(fd, 0o600)
                self._size = os.fstat(fd).st_size
            except OSError:
                _close(fd)
                raise
            self._fd = fd
        return self._fd

    def _rotate(self) -> None:
        """path.{K-1} -> path.{K}, ..., path -> path.1; the next write opens a fresh path.

        Oldest first, so at every instant there are at most K rotated files and the live
        one. A rename that fails leaves the file where it was; the write is retried later.
        """
        for i in range(self.keep - 1, 0, -1):
            _rename_if_exists(f"{self.path}.{i}", f"{self.path}.{i + 1}")
        _rename_if_exists(self.path, f"{self.path}.1")
        self.close()
        self._size = 0


def _rename_if_exists(src: str, dst: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rename(src, dst)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
