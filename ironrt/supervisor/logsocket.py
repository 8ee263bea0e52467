"""The log relay's socket: one relay per socket (a lock file), a private listening socket,
and its removal on the way out. Standard library only, like the relay (run as a script).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time

#: How long a starting relay waits for one on its way out to let go of the lock, seconds.
LOCK_WAIT = 3.0


def take_lock(socket_path: str) -> int | None:
    """A lock held for the relay's lifetime: two relays never serve one socket.

    None if another relay answers. A relay that holds the lock without answering is either
    still starting or on its way out: wait for it (briefly) rather than give up, so a relay
    spawned just as the previous one exits still comes up.
    """
    deadline = time.monotonic() + LOCK_WAIT
    fd = os.open(socket_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if answers(socket_path) or time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.02)


def answers(socket_path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(socket_path)
        except OSError:
            return False
    return True


def listen(socket_path: str) -> socket.socket:
    """Bind the socket private to the user (0600), replacing a stale socket file."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(socket_path)
    except OSError:
        listener.close()
        raise
    finally:
        os.umask(old)
    os.chmod(socket_path, 0o600)
    listener.listen(64)
    listener.setblocking(False)
    return listener


def unlink_if_ours(socket_path: str, inode: int) -> None:
    try:
        if os.stat(socket_path).st_ino == inode:
            os.unlink(socket_path)
    except OSError:
        pass
