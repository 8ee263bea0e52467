"""The daemon's side of the log relay: pipes for agents' output, and the relay kept alive.

Each agent's stdout and stderr is the write end of a pipe whose read end goes to the relay
process (`logrelay.py`), which writes and rotates the log file. The daemon keeps its own
duplicate of every read end it handed over. That duplicate is what makes the relay
replaceable: if the relay dies, the pipes stay open (an agent writing meanwhile fills the
pipe buffer, then blocks: nothing is lost, nothing gets SIGPIPE) and the daemon starts a
new relay and attaches every pipe again. On every connection the daemon asks the relay for
duplicates of the pipes it reads (`streams`), so a restarted daemon holds the pipes of the
agents it adopts too.

One connection, one request at a time (an anyio Lock): the relay answers each request with
one line (a `streams` answer may take several, the last with "more": false).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketAttribute, UNIXSocketStream

from ironrt.supervisor import logrelay
from ironrt.supervisor.logwire import (
    MAX_FDS_PER_MESSAGE,
    Framer,
    Message,
    encode,
    readable_bytes,
)

log = logging.getLogger("ironrt.supervisor")

#: How long a relay has to come up and answer (seconds).
START_TIMEOUT = 5.0
#: How long one request may take before the relay is deemed hung (seconds).
REQUEST_TIMEOUT = 10.0
#: How often `watch` checks that the relay is still there (seconds).
WATCH_INTERVAL = 0.5
#: How often `flushed` looks whether the relay has read an ended agent's pipes (seconds).
FLUSH_POLL = 0.005
#: A pipe this big holds a chatty agent's output for a while when a relay is replaced.
PIPE_SIZE = 1024 * 1024
#: F_SETPIPE_SZ (Linux only).
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

_BROKEN = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream)
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class RelayBroken(Exception):
    """The connection to the relay failed: reach (or start) a relay again, then retry."""


@dataclass(slots=True)
class HeldStream:
    """The daemon's duplicate of one pipe's read end, and how to attach it again."""

    name: str
    fd: int
    path: str
    max_bytes: int
    keep: int

    def attach_request(self) -> Message:
        return {
            "op": "attach",
            "stream": self.name,
            "path": self.path,
            "max_bytes": self.max_bytes,
            "keep": self.keep,
        }


class LogRelay:
    """Client of the log relay serving one ironrt home (one per daemon)."""

    def __init__(self, socket_path: Path, stderr_path: Path) -> None:
        self.socket_path = socket_path
        self.stderr_path = stderr_path
        #: The pid of the relay last reached (it answers `ping` with it).
        self.relay_pid: int | None = None
        self._conn: UNIXSocketStream | None = None
        self._framer = Framer()
        self._replies: list[tuple[Message, list[int]]] = []
        self._lock = anyio.Lock()
        self._held: dict[str, dict[str, HeldStream]] = {}
        self._counter = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._released: set[str] = set()
        self._restart_failing = False

    # ---- public API

    async def start(self) -> None:
        """Reach the running relay (or start one) and adopt the pipes it reads."""
        async with self._lock:
            await self._connect_or_spawn()

    async def pipe_for(self, agent_id: str, path: Path, max_bytes: int, keep: int) -> int:
        """A new pipe whose output goes to `path`; returns its write end for the child.

        The caller passes the write end to the child as stdout and stderr, then closes it.
        Raises OSError if no relay can be reached or started, or the relay refuses.
        """
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # a bigger buffer is a comfort, not a need
            fcntl.fcntl(read_end, F_SETPIPE_SZ, PIPE_SIZE)
        held = HeldStream("", read_end, str(path), max_bytes, keep)
        try:
            async with self._lock:
                await self._attach_new(agent_id, held)
        except BaseException:
            os.close(read_end)
            os.close(write_end)
            raise
        return write_end

    def release(self, agent_id: str) -> None:
        """Forget an agent's pipes (it ended for good and its whole tree is gone).

        The relay may still be writing out what they hold: their names are remembered so
        that they are not adopted again meanwhile.
        """
        for held in self._held.pop(agent_id, {}).values():
            os.close(held.fd)
            self._released.add(held.name)

    async def flushed(self, agent_id: str, timeout: float) -> bool:
        """Wait until the relay has written out all an ended agent wrote; False if it has
        not within `timeout` (no relay reached, a disk that refuses the data).

        `stop` returns, `logs` is read next: the agent's last lines, what it said on its
        way out, must be in the file by then, and the relay is a process of its own that a
        loaded machine may not run for a while. Its tree is gone, so nothing more comes:
        once its pipes are empty the relay has read everything, and since it writes what
        it reads in the same step, its answer to a request sent after that means the last
        read is written too.
        """
        held = list(self._held.get(agent_id, {}).values())
        if not held:
            return True
        with anyio.move_on_after(timeout):
            while any(_backlog(h.fd) for h in held):
                await anyio.sleep(FLUSH_POLL)
            async with self._lock:
                if self._conn is None:
                    return False
                try:
                    await self._request({"op": "ping"}, [])
                except RelayBroken:
                    return False
                return True
        return False

    def held(self, agent_id: str) -> list[str]:
        """Names of the streams whose read ends the daemon holds for this agent."""
        return sorted(self._held.get(agent_id, {}))

    async def watch(self) -> None:
        """Run for the daemon's lifetime: replace a relay that died, re-attaching its pipes."""
        while True:
            await anyio.sleep(WATCH_INTERVAL)
            async with self._lock:
                await self._check()

    async def aclose(self) -> None:
        """Close the connection; the relay goes on while it has pipes to read.

        The daemon's duplicates are closed too: they only matter to this daemon.
        """
        async with self._lock:
            self._disconnect()
            self._hand_off_process()
            for agent_id in list(self._held):
                self.release(agent_id)

    # ---- attaching

    async def _attach_new(self, agent_id: str, held: HeldStream) -> None:
        """Attach a new pipe; on a broken connection, reach a relay again and retry once."""
        for attempt in range(2):
            try:
                if self._conn is None:
                    await self._reconnect_and_reattach()
                elif self._held.get(agent_id):  # a restart: its old pipes may be finished
                    await self._sync_streams(prune=True)
                held.name = self._next_name(agent_id)
                reply = await self._request(held.attach_request(), [held.fd])
            except RelayBroken as exc:
                self._disconnect()
                if attempt:
                    raise OSError(f"log relay at {self.socket_path}: {exc}") from exc
                continue
            if not reply[0].get("ok"):
                raise OSError(f"log relay refused {held.path}: {reply[0].get('error')}")
            self._held.setdefault(agent_id, {})[held.name] = held
            return

    async def _reconnect_and_reattach(self) -> None:
        """Reach a relay (starting one if need be) and attach every pipe held again.

        Attaching is idempotent by name, so pipes a still-running relay reads are untouched.
        """
        await self._connect_or_spawn()
        for streams in list(self._held.values()):
            for held in list(streams.values()):
                reply = await self._request(held.attach_request(), [held.fd])
                if not reply[0].get("ok"):
                    log.error("log relay refused %s: %s", held.name, reply[0].get("error"))

    async def _check(self) -> None:
        """If the relay went away, start another and hand it the pipes (lock held)."""
        self._reap()
        if self._conn is not None and self._connection_alive():
            return
        self._disconnect()
        if not any(self._held.values()):
            return  # nothing to serve: the next pipe_for reaches a relay
        try:
            await self._reconnect_and_reattach()
        except (OSError, RelayBroken) as exc:
            self._disconnect()
            if not self._restart_failing:  # once per episode, not every half second
                log.error("log relay: cannot restart it (%s); trying again", exc)
            self._restart_failing = True
            return
        self._restart_failing = False
        count = sum(len(streams) for streams in self._held.values())
        log.warning("log relay: the connection was lost; %d pipes attached again", count)

    def _next_name(self, agent_id: str) -> str:
        """A stream name the relay has never seen (it may hold a previous daemon's)."""
        self._counter += 1
        return f"{agent_id}:{self._counter}"

    # ---- requests

    async def _request(self, message: Message, fds: list[int]) -> list[Message]:
        """Send one request and return its reply lines.

        On any failure, or interrupted half-way (cancelled), the connection's state is
        unknown: it is dropped (and RelayBroken raised for failures).
        """
        conn = self._conn
        if conn is None:
            raise RelayBroken("not connected")
        try:
            with anyio.fail_after(REQUEST_TIMEOUT):
                if fds:
                    await conn.send_fds(encode(message), fds)
                else:
                    await conn.send(encode(message))
                return await self._receive_reply()
        except (*_BROKEN, ValueError) as exc:
            self._disconnect()
            raise RelayBroken(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self._disconnect()
            raise

    async def _receive_reply(self) -> list[Message]:
        """Reply lines up to the one without "more": true; keeps `streams` descriptors."""
        lines: list[Message] = []
        while True:
            message, fds = await self._next_message()
            lines.append(message)
            self._keep_adopted(message, fds)
            if not message.get("more"):
                return lines

    async def _next_message(self) -> tuple[Message, list[int]]:
        conn = self._conn
        assert conn is not None
        while not self._replies:
            data, fds = await conn.receive_fds(65536, MAX_FDS_PER_MESSAGE + 3)
            for fd in fds:
                os.set_inheritable(fd, False)  # never for the agents the daemon spawns
            if not data:
                for fd in fds:
                    os.close(fd)
                raise anyio.EndOfStream
            self._replies.extend(self._framer.feed(data, fds))
        return self._replies.pop(0)

    def _keep_adopted(self, message: Message, fds: list[int]) -> None:
        """Hold the duplicates a `streams` reply carries (closing those already held)."""
        names = message.get("streams") or []
        params = message.get("attach") or []
        for i, fd in enumerate(fds):
            held = _held_from(names[i : i + 1], params[i : i + 1], fd)
            if held is None or self._holds(held.name) or held.name in self._released:
                os.close(fd)
                continue
            self._held.setdefault(_agent_of(held.name), {})[held.name] = held
            self._counter = max(self._counter, _sequence(held.name))

    def _holds(self, name: str) -> bool:
        return name in self._held.get(_agent_of(name), {})

    async def _sync_streams(self, prune: bool) -> None:
        """Ask the relay which pipes it reads; hold duplicates of those not held yet.

        Done on every connection: a previous daemon's pipes are adopted, and new stream
        names are numbered past every name the relay knows. With `prune`, also close the
        duplicates of pipes the relay has finished with (an agent restarted): such a pipe
        reached end of file and was written out, so the copy only costs a descriptor.
        """
        lines = await self._request({"op": "streams"}, [])
        if not lines[-1].get("ok"):
            raise RelayBroken(f"streams: {lines[-1].get('error')}")
        live = {name for line in lines for name in line.get("streams") or []}
        self._released &= live
        if not prune:
            return
        for agent_id, streams in list(self._held.items()):
            for name in [n for n in streams if n not in live]:
                os.close(streams.pop(name).fd)
            if not streams:
                del self._held[agent_id]

    # ---- connecting and spawning

    async def _connect_or_spawn(self) -> None:
        """Reach the relay; start one if none answers, and wait (bounded) for it."""
        if await self._try_connect():
            return
        deadline = anyio.current_time() + START_TIMEOUT
        self._spawn()
        while anyio.current_time() < deadline:
            await anyio.sleep(0.02)
            if await self._try_connect():
                return
            if self._proc is not None and self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                if code != 0:  # 0: another relay held the socket then; try again
                    raise OSError(f"the log relay exited with {code} (see {self.stderr_path})")
                self._spawn()
        raise OSError(
            f"the log relay did not answer on {self.socket_path} within {START_TIMEOUT:.0f} s "
            f"(see {self.stderr_path})"
        )

    async def _try_connect(self) -> bool:
        """Connect, ping and adopt the relay's pipes; False if no relay answers."""
        try:
            conn = await anyio.connect_unix(self.socket_path)
        except OSError:
            return False
        self._disconnect()
        self._conn = conn
        try:
            reply = await self._request({"op": "ping"}, [])
            await self._sync_streams(prune=False)
        except RelayBroken:
            self._disconnect()
            return False
        pid = reply[0].get("pid")
        self.relay_pid = pid if isinstance(pid, int) else None
        return True

    def _spawn(self) -> None:
        """Start a relay in its own session: the daemon's death, or a Ctrl-C in its
        terminal, does not reach it. Its stderr is appended to a file in the home."""
        self._reap()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.stderr_path, flags, 0o600)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", logrelay.__file__, str(self.socket_path)],
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=fd,
                close_fds=True,
            )
        finally:
            os.close(fd)

    def _connection_alive(self) -> bool:
        """Peek without consuming: end of file (or an error) means the relay is gone."""
        assert self._conn is not None
        raw = self._conn.extra(SocketAttribute.raw_socket)
        try:
            return bool(raw.recv(1, _PEEK))
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _disconnect(self) -> None:
        """Drop the connection and whatever half-read reply it had."""
        if self._conn is not None:
            self._conn.extra(SocketAttribute.raw_socket).close()
            self._conn = None
        self._framer.close_strays()
        self._framer = Framer()
        for _, fds in self._replies:
            for fd in fds:
                os.close(fd)
        self._replies = []

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None

    def _hand_off_process(self) -> None:
        """The relay outlives this client: reap it from a thread, not warn about it at exit."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            threading.Thread(target=proc.wait, name="logrelay-reaper", daemon=True).start()


def _backlog(fd: int) -> int:
    """Bytes still in a held pipe (0 if it cannot be asked: nothing to wait for)."""
    try:
        return readable_bytes(fd)
    except OSError:
        return 0


def _agent_of(name: str) -> str:
    return name.rpartition(":")[0]


def _sequence(name: str) -> int:
    tail = name.rpartition(":")[2]
    return int(tail) if tail.isdigit() else 0


def _held_from(names: list[Any], params: list[Any], fd: int) -> HeldStream | None:
    """A held stream from one entry of a `streams` reply; None if malformed."""
    if not names or not params or not isinstance(names[0], str):
        return None
    spec = params[0]
    if not isinstance(spec, dict):
        return None
    path, max_bytes, keep = spec.get("path"), spec.get("max_bytes"), spec.get("keep")
    if not isinstance(path, str) or not isinstance(max_bytes, int) or not isinstance(keep, int):
        return None
    return HeldStream(names[0], fd, path, max_bytes, keep)
