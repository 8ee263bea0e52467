"""A daemon that dies while a client waits for its answer gives both clients and the CLI
one clear DaemonUnavailable, never a raw ConnectionResetError or a truncated answer decoded
as if it were whole (a killed daemon is bad input too)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from ironrt import AsyncRuntime, DaemonUnavailable, Runtime
from ironrt.config import Settings
from ironrt.tempdaemon import TempDaemon, wait_until

WENT = "closed the connection before it answered"


def _reset(conn: socket.socket) -> None:
    """Read the request, then close with RST (SO_LINGER 0): a daemon killed mid-call."""
    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _truncated(conn: socket.socket) -> None:
    """Announce a 100-byte JSON answer, send 12 bytes of it, close."""
    conn.recv(65536)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
        b'{"id": "ag-1'
    )


@contextlib.contextmanager
def dying_daemon(answer: Callable[[socket.socket], None]) -> Iterator[Path]:
    """A Unix socket where a daemon would listen, answering every connection with
    `answer` and then closing it. Yields the home."""
    with tempfile.TemporaryDirectory(prefix="irt-", dir="/tmp") as tmp:
        home = Path(tmp)
        path = Settings.load({"IRONRT_HOME": str(home)}).socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(8)
        server.settimeout(0.2)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    answer(conn)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield home
        finally:
            stop.set()
            thread.join(5)
            server.close()


@pytest.mark.parametrize("answer", [_reset, _truncated], ids=["reset", "truncated"])
def test_sync_client_says_the_daemon_went(answer: Callable[[socket.socket], None]) -> None:
    with dying_daemon(answer) as home:
        rt = Runtime(home=home, autostart=False, timeout=10)
        with pytest.raises(DaemonUnavailable, match=WENT):
            rt.get_agent("ag-1")
        with pytest.raises(DaemonUnavailable, match=WENT):
            rt.start_agent(["true"])  # a write, too: never retried, never a raw error


@pytest.mark.parametrize("answer", [_reset, _truncated], ids=["reset", "truncated"])
def test_async_client_says_the_daemon_went(answer: Callable[[socket.socket], None]) -> None:
    async def main(home: Path) -> None:
        async with AsyncRuntime(home=home, autostart=False, timeout=10) as art:
            with pytest.raises(DaemonUnavailable, match=WENT):
                await art.get_agent("ag-1")

    with dying_daemon(answer) as home:
        anyio.run(main, home)


def test_cli_says_the_daemon_went_in_one_line() -> None:
    with dying_daemon(_reset) as home:
        done = subprocess.run(
            [sys.executable, "-m", "ironrt", "ps"],
            env={"IRONRT_HOME": str(home), "IRONRT_NO_AUTOSTART": "1", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert WENT in done.stderr
    assert "Traceback" not in done.stderr and "ConnectionResetError" not in done.stderr


def test_a_daemon_killed_during_a_wait_is_daemon_unavailable() -> None:
    """The real thing: a client blocked in `wait` on a running agent, and the daemon
    SIGKILLed under it."""
    with TempDaemon() as daemon:
        agent_id = daemon.rt.start_agent(["sleep", "300"])
        rt = Runtime(home=daemon.home, autostart=False, timeout=60)
        caught: list[BaseException] = []

        def waiter() -> None:
            try:
                rt.wait(agent_id, timeout=60)
            except BaseException as exc:  # the test reads what it was
                caught.append(exc)

        thread = threading.Thread(target=waiter)
        thread.start()
        wait_until(lambda: _has_waiter(daemon), timeout=10)
        pid = daemon.rt.get_agent(agent_id).pid
        daemon.kill()
        thread.join(30)
        assert not thread.is_alive()
        if pid:  # the agent outlives a killed daemon: end it here
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    assert len(caught) == 1 and isinstance(caught[0], DaemonUnavailable), caught
    assert WENT in str(caught[0])


def _has_waiter(daemon: TempDaemon) -> bool:
    """Whether the daemon holds a second client connection (the waiter's) open."""
    assert daemon.proc is not None
    sock = str(daemon.rt.settings.socket_path)
    conns = psutil.Process(daemon.proc.pid).net_connections("unix")
    mine = [c for c in conns if isinstance(c.laddr, str) and c.laddr == sock]
    return len(mine) >= 2  # the listener and the waiter's accepted connection
