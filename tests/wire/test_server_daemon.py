"""The wire server as the daemon runs it: the router's answers through a real daemon and a
fake upstream, over raw sockets (pipelining, 100-continue, chunked bodies, limits) and the
openai SDK (a stream), and the control socket's followers."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironrt.tempdaemon import TempDaemon
from ironrt.testing import FakeUpstream
from ironrt.wire.connection import HEAD_LIMIT
from tests.router.helpers import OPENAI_KEY, governed_env, sdk_client, token_agent
from tests.wire.test_server_http import closed_after, read_answer

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
).encode()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def daemon(upstream: FakeUpstream) -> Iterator[TempDaemon]:
    with TempDaemon(offline=False, env=governed_env(upstream.url)) as d:
        yield d


@pytest.fixture(scope="module")
def token(daemon: TempDaemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    return token_agent(daemon, tmp_path_factory.mktemp("agent"))[1]


def _connect(daemon: TempDaemon) -> socket.socket:
    host, port = daemon.router_url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=20)


def _call(token: str, body: bytes = BODY, *extra: str) -> bytes:
    lines = [
        "POST /v1/chat/completions HTTP/1.1",
        "host: router",
        f"authorization: Bearer {token}",
        "content-type: application/json",
        *extra,
    ]
    if not any(x.lower().startswith("transfer-encoding") for x in extra):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_pipelined_calls_are_answered_in_order(daemon: TempDaemon, token: str) -> None:
    with _connect(daemon) as sock:
        sock.sendall(_call(token) + b"GET /health HTTP/1.1\r\nhost: r\r\n\r\n" + _call(token))
        buf = bytearray()
        first, health, last = (read_answer(sock, buf) for _ in range(3))
    assert first[0].startswith(b"HTTP/1.1 200") and json.loads(first[2])["object"] == (
        "chat.completion"
    )
    assert health[2] == b'{"ok":true}'
    assert last[0].startswith(b"HTTP/1.1 200") and b"chat.completion" in last[2]


def test_expect_100_continue_and_a_chunked_body(daemon: TempDaemon, token: str) -> None:
    with _connect(daemon) as sock:
        sock.sendall(
            _call(token, b"", "expect: 100-continue").replace(
                b"length: 0", b"length: %d" % len(BODY)
            )
        )
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(4096)
        assert bytes(buf) == b"HTTP/1.1 100 Continue\r\n\r\n"
        buf.clear()
        sock.sendall(BODY)
        status, _, _ = read_answer(sock, buf)
        assert status.startswith(b"HTTP/1.1 200")
        half = len(BODY) // 2
        chunked = b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n" % (
            half,
            BODY[:half],
            len(BODY) - half,
            BODY[half:],
        )
        sock.sendall(_call(token, chunked, "transfer-encoding: chunked"))
        status, _, body = read_answer(sock, buf)
        assert status.startswith(b"HTTP/1.1 200") and b"chat.completion" in body


def test_a_refusal_before_the_body_sends_no_100(daemon: TempDaemon) -> None:
    """No such agent: refused on its headers alone; the body is never asked for."""
    with _connect(daemon) as sock:
        head = _call("not-a-token", b"", "expect: 100-continue")
        sock.sendall(head.replace(b"length: 0", b"length: %d" % len(BODY)))
        answer = closed_after(sock, bytearray(), timeout=20)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert OPENAI_KEY.encode() not in answer


def test_oversized_headers_get_431_from_the_router(daemon: TempDaemon, token: str) -> None:
    with _connect(daemon) as sock:
        sock.sendall(_call(token, BODY, "x-pad: " + "a" * HEAD_LIMIT))
        answer = closed_after(sock, bytearray(), timeout=20)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_a_streamed_call_through_the_sdk(daemon: TempDaemon, token: str) -> None:
    client = sdk_client(daemon, token)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text


def test_the_control_socket_follows_events(daemon: TempDaemon, tmp_path: Path) -> None:
    """A long-lived streamed answer on the control socket: events arrive as they happen."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(daemon.home / "ironrt.sock"))
    sock.settimeout(20)
    with sock:
        sock.sendall(
            b"GET /v1/events?follow=true HTTP/1.1\r\nhost: ironrt\r\n"
            b"accept: text/event-stream\r\n\r\n"
        )
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(4096)
        assert buf.startswith(b"HTTP/1.1 200")
        daemon.rt.set_limits("global", budget_usd=123.0)
        while b"123" not in buf:
            chunk = sock.recv(65536)
            assert chunk, bytes(buf)
            buf += chunk
