"""Slow and greedy clients against both sockets of a real daemon: slowloris headers, a
trickled body, silent connections and a flood of idle ones are dealt with, and an agent's
calls keep working all along (issue 10)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from tests.router.helpers import governed_env, token_agent

CAP = 32


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def daemon(upstream: FakeUpstream) -> Iterator[TempDaemon]:
    env = governed_env(
        upstream.url,
        IRONRT_MAX_CONNECTIONS=str(CAP),
        IRONRT_MAX_CONNECTIONS_PER_PEER=str(CAP),
        IRONRT_HEADER_TIMEOUT="1",
        IRONRT_BODY_TIMEOUT="1",
        IRONRT_KEEPALIVE_TIMEOUT="2",
    )
    with TempDaemon(offline=False, env=env) as d:
        yield d


@pytest.fixture(scope="module")
def token(daemon: TempDaemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    return token_agent(daemon, tmp_path_factory.mktemp("agent"))[1]


def _router(daemon: TempDaemon) -> tuple[str, int]:
    host, port = daemon.router_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _tcp(daemon: TempDaemon) -> socket.socket:
    sock = socket.create_connection(_router(daemon), timeout=10)
    return sock


def _closed_by_server(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sent before it closed the connection; fails on timeout."""
    sock.settimeout(timeout)
    got = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return got
        got += chunk


def _call(daemon: TempDaemon, token: str) -> int:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(
        f"{daemon.router_url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {token}"},
        timeout=20,
    )
    return r.status_code


def test_slowloris_headers_are_cut_off(daemon: TempDaemon) -> None:
    """A byte of headers now and then never completes a request: 408 and closed after the
    header timeout (1 s here), however steadily the bytes come."""
    socks = [_tcp(daemon) for _ in range(5)]
    began = time.monotonic()
    closed: set[int] = set()
    for sock in socks:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
        sock.setblocking(False)
    while len(closed) < len(socks) and time.monotonic() - began < 8:
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                sock.send(b"x")
            with contextlib.suppress(BlockingIOError):
                data = sock.recv(65536)
                if data.startswith(b"HTTP/1.1 408") or data == b"":
                    closed.add(i)
        time.sleep(0.1)  # the slowloris pace: this is the attack, not a wait
    assert len(closed) == len(socks), "slow headers kept their connections open"
    assert time.monotonic() - began < 5
    for sock in socks:
        sock.close()


def test_silent_connections_and_stalled_bodies_are_closed(daemon: TempDaemon) -> None:
    silent = _tcp(daemon)
    answer = _closed_by_server(silent, timeout=6)
    assert answer.startswith(b"HTTP/1.1 408")
    stalled = _tcp(daemon)
    stalled.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 1000\r\n\r\n{"
    )
    began = time.monotonic()
    _closed_by_server(stalled, timeout=6)  # no more body: closed after the body timeout
    assert time.monotonic() - began < 5
    silent.close()
    stalled.close()


def test_idle_keepalive_connection_is_closed(daemon: TempDaemon) -> None:
    sock = _tcp(daemon)
    sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    answer = _closed_by_server(sock, timeout=8)  # answered, then closed when idle (2 s)
    assert answer.startswith(b"HTTP/1.1 200") and b'{"ok":true}' in answer
    sock.close()


def test_a_flood_of_idle_connections_does_not_lock_agents_out(
    daemon: TempDaemon, token: str
) -> None:
    """Ten times the cap of idle connections from this process (same address as the
    agent): the oldest idle ones make room, and every call of the agent is answered."""
    flood = []
    try:
        for _ in range(CAP * 10):
            with contextlib.suppress(OSError):
                flood.append(_tcp(daemon))
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: _call(daemon, token), range(24)))
        assert statuses == [200] * 24
        # The control socket, flooded past its own cap the same way, still answers.
        unix = []
        for _ in range(600):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(daemon.home / "ironrt.sock"))
            unix.append(s)
        assert daemon.rt.health().ok
        for s in unix:
            s.close()
    finally:
        for sock in flood:
            sock.close()


def test_connections_over_the_cap_are_refused_at_once_when_all_are_busy(
    daemon: TempDaemon, upstream: FakeUpstream, token: str
) -> None:
    """With every connection inside a (slow) call, there is nothing idle to evict: a new
    connection gets a 503 with Retry-After at once, and the calls in flight finish."""
    upstream.clear_requests()
    upstream.latency = 2.0
    try:
        with ThreadPoolExecutor(CAP) as pool:
            calls = [pool.submit(_call, daemon, token) for _ in range(CAP)]
            got = upstream.wait_for_requests(CAP, timeout=10)
            assert len(got) >= CAP  # every connection is inside a call
            began = time.monotonic()
            sock = _tcp(daemon)
            answer = _closed_by_server(sock, timeout=5)
            sock.close()
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"retry-after: 1" in answer.lower()
            assert time.monotonic() - began < 1.0
            assert [c.result() for c in calls] == [200] * CAP
    finally:
        upstream.latency = 0.0
    assert _call(daemon, token) == 200


def test_only_its_own_user_may_use_the_control_socket(daemon: TempDaemon, tmp_path: Path) -> None:
    """Another user's connection is refused with 403 (SO_PEERCRED) before it says anything."""
    import os
    import subprocess
    import sys

    if os.getuid() != 0:
        pytest.skip("needs root to connect as another user")
    probe = (
        "import os, socket, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "print(s.recv(4096).split(b'\\r\\n')[0].decode())\n"
    )
    sock_path = daemon.home / "ironrt.sock"
    os.chmod(daemon.home, 0o711)
    os.chmod(sock_path, 0o666)
    try:
        out = subprocess.run(
            [sys.executable, "-c", probe, str(sock_path)],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=tmp_path,
        )
    finally:
        os.chmod(sock_path, 0o600)
        os.chmod(daemon.home, 0o700)
    assert out.stdout.strip() == "HTTP/1.1 403 Forbidden", out.stderr
