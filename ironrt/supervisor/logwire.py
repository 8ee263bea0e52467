"""The log relay's wire format, shared by the relay (`logrelay.py`) and the daemon's client.

One JSON object per line on a Unix stream socket; descriptors travel with SCM_RIGHTS in the
same sendmsg as the line that carries them. A client sends one request and waits for its
reply. Which messages carry descriptors, and how many, follows from the message itself
(`fd_count`): an attach request carries one, a `streams` reply one per name.

Standard library only, and nothing from `ironrt`: the relay runs as a script by file path
and imports this module as a top-level one (see `logrelay.py`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import termios
from collections import deque
from collections.abc import Mapping
from typing import Any

#: Descriptors per sendmsg: the kernel refuses more than 253 (SCM_MAX_FD).
MAX_FDS_PER_MESSAGE = 250
#: A line longer than this is not a request: the connection is closed.
MAX_LINE = 1024 * 1024

Message = dict[str, Any]


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as its wire line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def fd_count(message: Mapping[str, Any]) -> int:
    """How many descriptors travel with this message (requests and replies alike)."""
    if message.get("op") == "attach":
        return 1
    streams = message.get("streams")
    return len(streams) if isinstance(streams, list) else 0


class Framer:
    """Cuts a byte stream into messages and gives each one its descriptors.

    The kernel delivers a sendmsg's descriptors with the first byte of its data, and never
    those of two sendmsgs in one recvmsg. So descriptors arrive in message order, no later
    than the end of their line: a FIFO, from which each complete line takes `fd_count` of
    its own, hands every message exactly its descriptors, however the bytes were split.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buffer = bytearray()
        self._fds: deque[int] = deque()
        self._max_line = max_line

    def feed(self, data: bytes, fds: list[int]) -> list[tuple[Message, list[int]]]:
        """The messages completed by `data`; raises ValueError on a malformed stream."""
        self._buffer += data
        self._fds.extend(fds)
        out: list[tuple[Message, list[int]]] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("a message must be a JSON object")
            wanted = min(fd_count(message), len(self._fds))
            out.append((message, [self._fds.popleft() for _ in range(wanted)]))
        if len(self._buffer) > self._max_line:
            raise ValueError("message line too long")
        if not self._buffer:
            self.close_strays()
        return out

    def close_strays(self) -> None:
        """Close descriptors no message claimed (nothing partial is buffered to claim them)."""
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.popleft())


def readable_bytes(fd: int) -> int:
    """How many bytes a pipe holds that nobody has read yet (FIONREAD): what the relay
    drains on its way out, and what the daemon waits to see read after an agent ends."""
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)
