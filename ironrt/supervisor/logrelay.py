"""The log relay: a small process that writes every agent's stdout/stderr to its log file.

Why a separate process: an agent's output is the write end of a pipe; whoever holds the read
end must keep reading or the agent blocks. If the daemon read the pipes, a daemon crash
would close them and the agents would die of SIGPIPE. The relay runs in its own session,
outlives the daemon, and does nothing else, so it is the part least likely to die. The
daemon keeps a duplicate of every read end: if the relay does die, the pipes stay open
(their buffers keep what the agents write meanwhile) and the daemon hands them to a new one.

Run as a script by file path (`python -I logrelay.py SOCKET_PATH`) so it starts without
importing the ironrt package: standard library only, and nothing from `ironrt` but its two
stdlib-only siblings, `logwire` (the protocol, shared with the daemon's `logrelay_client`),
`logwriter` (writing and rotating a log file) and `logsocket` (its socket and lock).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING or __package__:
    from ironrt.supervisor import logsocket
    from ironrt.supervisor.logwire import (
        MAX_FDS_PER_MESSAGE,
        Framer,
        Message,
        encode,
        readable_bytes,
    )
    from ironrt.supervisor.logwriter import DISK_FULL, LogWriter
else:
    # Run as a script: `-I` leaves this directory off sys.path and the ironrt package may
    # not be importable at all, so the siblings are loaded as top-level modules.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import logsocket
    from logwire import MAX_FDS_PER_MESSAGE, Framer, Message, encode, readable_bytes
    from logwriter import DISK_FULL, LogWriter

#: Bytes read from a pipe at a time; also the most the relay holds for a stream in memory.
CHUNK = 64 * 1024
#: How often a write that failed (full disk...) is tried again, in seconds.
RETRY_INTERVAL = 1.0
#: With no stream and no client, the relay exits after this long (seconds).
IDLE_GRACE = 1.0
#: Right after start-up the relay waits this long for its first client (seconds).
FIRST_CLIENT_WAIT = 30.0

Handler = Callable[[int], None]


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def log(text: str) -> None:
    """One line on stderr (the daemon points it at a file in the ironrt home)."""
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        print(f"{stamp} logrelay[{os.getpid()}]: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


# ---- the relay ------------------------------------------------------------------------------


class Stream:
    """One pipe's read end, feeding one writer."""

    def __init__(self, name: str, fd: int, writer: LogWriter) -> None:
        self.name = name
        self.fd = fd
        self.writer = writer
        #: Read but not yet written (the disk refused it): the pipe is not read meanwhile.
        self.pending = b""
        self.retry_at = 0.0


class Client:
    """One connection: its reassembly of requests and its queue of replies to send."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.framer = Framer()
        self.outbox: deque[tuple[bytes, list[int]]] = deque()


class Relay:
    def __init__(self, listener: socket.socket) -> None:
        self.sel = selectors.DefaultSelector()
        self.listener = listener
        self.streams: dict[str, Stream] = {}
        self.writers: dict[str, LogWriter] = {}
        self.clients: dict[int, Client] = {}
        self.stopping = False
        self.had_client = False
        self.started = time.monotonic()
        self.idle_since: float | None = None
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel.register(listener, selectors.EVENT_READ, self._on_accept)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_wake)

    # -- main loop

    def run(self) -> int:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            while not self.stopping:
                for key, mask in self.sel.select(self._timeout()):
                    handler: Handler = key.data
                    handler(mask)
                now = time.monotonic()
                self._retry_pending(now)
                if self._idle_long_enough(now):
                    break
            if self.stopping:
                self._drain()
        finally:
            signal.set_wakeup_fd(-1)
            self._close_all()
        return 0

    def _timeout(self) -> float:
        """Until the next retry or idle check; at most a second."""
        now = time.monotonic()
        due = [s.retry_at for s in self.streams.values() if s.pending]
        if not self.streams and not self.clients:
            if self.had_client:
                due.append((self.idle_since or now) + IDLE_GRACE)
            else:
                due.append(self.started + FIRST_CLIENT_WAIT)
        return max(0.0, min([now + 1.0, *due]) - now)

    def _idle_long_enough(self, now: float) -> bool:
        if self.streams or self.clients:
            self.idle_since = None
            return False
        if self.idle_since is None:
            self.idle_since = now
        if not self.had_client:
            return now - self.started >= FIRST_CLIENT_WAIT
        return now - self.idle_since >= IDLE_GRACE

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_wake(self, mask: int) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    # -- streams

    def _on_stream(self, stream: Stream) -> Handler:
        def on_readable(mask: int) -> None:
            self._read(stream)

        return on_readable

    def _read(self, stream: Stream, size: int = CHUNK) -> bool:
        """Read once and write it out; False when the stream cannot go on (EOF, paused)."""
        try:
            data = os.read(stream.fd, size)
        except BlockingIOError:
            return False
        except OSError as exc:
            log(f"{stream.name}: read failed ({exc}); closing the stream")
            data = b""
        if not data:
            self._end_stream(stream)
            return False
        return self._deliver(stream, data)

    def _deliver(self, stream: Stream, data: bytes) -> bool:
        """Write what was just read; if the disk refuses some, stop reading this pipe."""
        if self._write(stream, data):
            return True
        self.sel.unregister(stream.fd)
        return False

    def _write(self, stream: Stream, data: bytes) -> bool:
        """Write `data`; what the disk refuses is kept for a retry, never dropped.

        The paused pipe fills up and the agent blocks on its own writes (backpressure)
        until the disk takes data again. The error is logged once per episode.
        """
        writer = stream.writer
        written, error = writer.write(data)
        if error is None:
            if writer.failing:
                writer.failing = False
                log(f"{writer.path}: writing again")
            return True
        stream.pending = data[written:]
        stream.retry_at = time.monotonic() + RETRY_INTERVAL
        if not writer.failing:
            writer.failing = True
            what = "disk full" if error.errno in DISK_FULL else "write failed"
            log(f"{writer.path}: {what} ({error}); holding the output, retrying every second")
        return False

    def _retry_pending(self, now: float) -> None:
        for stream in list(self.streams.values()):
            if stream.pending and stream.retry_at <= now:
                data, stream.pending = stream.pending, b""
                if self._write(stream, data):
                    self.sel.register(stream.fd, selectors.EVENT_READ, self._on_stream(stream))

    def _end_stream(self, stream: Stream) -> None:
        """All writers closed the pipe and everything read was written: forget it."""
        if not stream.pending:
            self.sel.unregister(stream.fd)
        _close(stream.fd)
        del self.streams[stream.name]
        writer = stream.writer
        writer.refs -= 1
        if writer.refs == 0:
            writer.close()
            del self.writers[writer.path]

    def attach(self, request: Message, fds: list[int]) -> Message:
        """Start reading a pipe into a log file (a name already attached: keep the first)."""
        if len(fds) != 1:
            raise ValueError(f"attach carries exactly one descriptor, got {len(fds)}")
        fd = fds.pop()
        try:
            name, path, max_bytes, keep = _attach_args(request)
            if name in self.streams:
                _close(fd)
                return {"ok": True}
            os.set_blocking(fd, False)
        except (ValueError, OSError):
            _close(fd)
            raise
        writer = self.writers.get(path)
        if writer is None:
            writer = self.writers[path] = LogWriter(path, max_bytes, keep)
        writer.max_bytes, writer.keep = max_bytes, keep
        writer.refs += 1
        stream = self.streams[name] = Stream(name, fd, writer)
        self.sel.register(fd, selectors.EVENT_READ, self._on_stream(stream))
        return {"ok": True}

    def list_streams(self) -> list[tuple[Message, list[int]]]:
        """Names (and attach parameters) of the streams read, with duplicates of their fds."""
        names = sorted(self.streams)
        batches: list[tuple[Message, list[int]]] = []
        for start in range(0, max(1, len(names)), MAX_FDS_PER_MESSAGE):
            batch = names[start : start + MAX_FDS_PER_MESSAGE]
            fds: list[int] = []
            try:
                for name in batch:
                    fds.append(os.dup(self.streams[name].fd))
            except OSError:
                for fd in fds + [fd for _, more in batches for fd in more]:
                    _close(fd)
                raise
            more = start + MAX_FDS_PER_MESSAGE < len(names)
            reply = {"ok": True, "streams": batch, "more": more, "attach": self._params(batch)}
            batches.append((reply, fds))
        return batches

    def _params(self, names: list[str]) -> list[Message]:
        out: list[Message] = []
        for name in names:
            w = self.streams[name].writer
            out.append({"path": w.path, "max_bytes": w.max_bytes, "keep": w.keep})
        return out

    def _drain(self) -> None:
        """SIGTERM: write what the pipes hold right now (bounded by it), then stop."""
        for stream in list(self.streams.values()):
            if stream.pending:
                data, stream.pending = stream.pending, b""
                self._write(stream, data)
                continue
            try:
                left = readable_bytes(stream.fd)
            except OSError:
                continue
            while left > 0 and stream.name in self.streams:
                if not self._read(stream, min(CHUNK, left)):
                    break
                left -= CHUNK

    # -- clients

    def _on_accept(self, mask: int) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        client = self.clients[sock.fileno()] = Client(sock)
        self.had_client = True
        self.sel.register(sock, selectors.EVENT_READ, lambda m: self._on_client(client, m))

    def _on_client(self, client: Client, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(client)
        if mask & selectors.EVENT_READ and client.sock.fileno() >= 0:
            self._receive(client)

    def _receive(self, client: Client) -> None:
        try:
            data, fds, flags, _ = socket.recv_fds(client.sock, 65536, MAX_FDS_PER_MESSAGE + 3)
        except BlockingIOError:
            return
        except OSError:
            self._drop_client(client)
            return
        if flags & socket.MSG_CTRUNC:
            log("a message's descriptors were truncated")
        if not data:
            for fd in fds:
                _close(fd)
            self._drop_client(client)
            return
        try:
            messages = client.framer.feed(data, fds)
        except ValueError as exc:
            log(f"closing a client that sent a malformed message: {exc}")
            self._drop_client(client)
            return
        for request, got in messages:
            for reply in self._handle(request, got):
                client.outbox.append((encode(reply[0]), reply[1]))
        self._flush(client)

    def _handle(self, request: Message, fds: list[int]) -> list[tuple[Message, list[int]]]:
        op = request.get("op")
        try:
            if op == "attach":
                return [(self.attach(request, fds), [])]
            if op == "streams":
                return self.list_streams()
            if op == "ping":
                return [({"ok": True, "pid": os.getpid()}, [])]
            raise ValueError(f"unknown op {op!r}")
        except (ValueError, OSError) as exc:
            return [({"ok": False, "error": str(exc)}, [])]
        finally:
            for fd in fds:
                _close(fd)

    def _flush(self, client: Client) -> None:
        """Send queued replies; what the socket cannot take now waits for EVENT_WRITE."""
        while client.outbox:
            data, fds = client.outbox[0]
            try:
                sent = socket.send_fds(client.sock, [data], fds) if fds else client.sock.send(data)
            except BlockingIOError:
                break
            except OSError:
                self._drop_client(client)
                return
            for fd in fds:  # our duplicates: the peer has its own now
                _close(fd)
            if sent < len(data):
                client.outbox[0] = (data[sent:], [])
            else:
                client.outbox.popleft()
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        self.sel.modify(client.sock, events, self.sel.get_key(client.sock).data)

    def _drop_client(self, client: Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(client.sock)
        client.framer.close_strays()
        for _, fds in client.outbox:
            for fd in fds:
                _close(fd)
        client.outbox.clear()
        client.sock.close()

    def _close_all(self) -> None:
        for client in list(self.clients.values()):
            self._drop_client(client)
        for stream in list(self.streams.values()):
            if stream.pending:
                log(f"{stream.name}: exiting with {len(stream.pending)} bytes unwritten")
            _close(stream.fd)
        for writer in self.writers.values():
            writer.close()
        self.sel.close()
        self.listener.close()
        _close(self.wake_r)
        _close(self.wake_w)


def _attach_args(request: Message) -> tuple[str, str, int, int]:
    name, path = request.get("stream"), request.get("path")
    max_bytes, keep = request.get("max_bytes"), request.get("keep")
    if not isinstance(name, str) or not name:
        raise ValueError("attach needs a stream name")
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ValueError("attach needs an absolute path")
    if not os.path.isdir(os.path.dirname(path)):
        raise ValueError(f"no such directory: {os.path.dirname(path)}")
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ValueError("max_bytes must be a positive integer")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise ValueError("keep must be an integer >= 1")
    return name, path, max_bytes, keep


def main(argv: list[str]) -> int:
    # Before anything else: a Ctrl-C in the daemon's terminal must not reach the relay.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if len(argv) != 2:
        print("usage: logrelay.py SOCKET_PATH", file=sys.stderr)
        return 2
    socket_path = argv[1]
    lock = logsocket.take_lock(socket_path)
    if lock is None or logsocket.answers(socket_path):
        return 0  # another relay serves this home
    try:
        listener = logsocket.listen(socket_path)
        inode = os.stat(socket_path).st_ino
        log(f"listening on {socket_path}")
        try:
            return Relay(listener).run()
        finally:
            logsocket.unlink_if_ours(socket_path, inode)
            log("exiting")
    finally:
        os.close(lock)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
