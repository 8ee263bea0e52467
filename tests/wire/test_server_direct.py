"""The wire server's direct interface (`app.serve_wire(cycle)`, how the daemon serves the
router): the request's parts without an ASGI scope, the whole body read under a limit,
the answer framed by `start`/`write`/`answer`, a client leaving seen by the reader and
by `wait_gone`. Real sockets against a real `Server`, as in test_server_http.py."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from ironrt.tempdaemon import wait_until
from ironrt.wire.cycle import BodyTooLarge, ClientGone, Cycle
from tests.wire.test_server_http import (
    LIMITS,
    Running,
    closed_after,
    continued,
    leave_mid_stream,
    read_answer,
    req,
)

LIMIT = 1000


class DirectApp:
    """An app with the direct interface only (no `__call__`): one behaviour per path."""

    def __init__(self) -> None:
        self.server: Any = None
        self.seen: dict[str, Any] = {}

    async def serve_wire(self, cycle: Cycle) -> None:
        name = cycle.raw_path.decode().strip("/").replace("-", "_")
        await getattr(self, "do_" + name)(cycle)

    async def do_echo(self, cycle: Cycle) -> None:
        body = await cycle.read_body(LIMIT)
        info = {
            "method": cycle.method,
            "raw_path": cycle.raw_path.decode(),
            "query": cycle.query.decode(),
            "version": cycle.http_version,
            "headers": [[k.decode(), v.decode()] for k, v in cycle.headers],
            "body": body.decode(),
        }
        await cycle.answer(200, [(b"content-type", b"application/json")], json.dumps(info).encode())

    async def do_capped(self, cycle: Cycle) -> None:
        try:
            await cycle.read_body(LIMIT)
        except BodyTooLarge:
            self.seen["capped"] = "too large"
            await cycle.answer(413, [], b"too large")
            return
        await cycle.answer(200, [], b"fits")

    async def do_wait_body(self, cycle: Cycle) -> None:
        try:
            await cycle.read_body(LIMIT)
        except ClientGone:
            self.seen["wait_body"] = "gone"
            return
        self.seen["wait_body"] = "read"
        await cycle.answer(200, [], b"read")

    async def do_stream(self, cycle: Cycle) -> None:
        cycle.start(200, [(b"content-type", b"text/event-stream")])
        for i in range(3):
            await cycle.write(b"data: %d\n\n" % i, more=True)
        await cycle.write(b"")

    async def do_stream_until_gone(self, cycle: Cycle) -> None:
        cycle.start(200, [(b"content-type", b"text/event-stream")])
        await cycle.write(b"data: first\n\n", more=True)
        await asyncio.wait_for(cycle.wait_gone(), 5)
        self.seen["gone_seen"] = cycle.disconnected
        await cycle.write(b"data: nobody reads this\n\n", more=True)  # dropped, no error
        await cycle.write(b"")
        self.seen["after_gone"] = "no error"

    async def do_body_first(self, cycle: Cycle) -> None:
        await cycle.write(b"a body before any head")


@pytest.fixture(scope="module")
def direct() -> Iterator[tuple[Running, DirectApp]]:
    app = DirectApp()
    running = Running(app, LIMITS)  # type: ignore[arg-type]
    yield running, app
    running.stop()


def _ask(running: Running, data: bytes) -> tuple[bytes, dict[str, str], bytes]:
    with running.connect() as sock:
        sock.sendall(data)
        return read_answer(sock, bytearray())


def test_the_request_reaches_the_app_without_a_scope(direct: tuple[Running, DirectApp]) -> None:
    running, _ = direct
    status, headers, body = _ask(
        running, req("/echo?a=1&b=%2F", b"hello", "POST", "X-Mixed-Case: Kept")
    )
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == str(len(body))  # a whole answer: its size counted
    info = json.loads(body)
    assert info["method"] == "POST" and info["version"] == "1.1"
    assert info["raw_path"] == "/echo" and info["query"] == "a=1&b=%2F"
    assert ["x-mixed-case", "Kept"] in info["headers"]  # names lower-cased, values as sent
    assert info["body"] == "hello"


def test_chunked_and_expect_100_bodies_are_read_whole(direct: tuple[Running, DirectApp]) -> None:
    running, _ = direct
    with running.connect() as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        buf = continued(sock)
        sock.sendall(b"5\r\nhello\r\n")
        sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
        _, _, body = read_answer(sock, buf)
    assert json.loads(body)["body"] == "hello world"


def test_a_body_over_the_readers_limit_is_refused_and_the_rest_unread(
    direct: tuple[Running, DirectApp],
) -> None:
    running, app = direct
    with running.connect() as sock:
        # More than the limit came, and more is announced: refused without the rest.
        head = req("/capped", b"").replace(b"0\r\n", b"%d\r\n" % (2 * LIMIT))
        sock.sendall(head + b"x" * (LIMIT + 1))
        buf = bytearray()
        status, _, body = read_answer(sock, buf)
        assert (status, body) == (b"HTTP/1.1 413 Request Entity Too Large", b"too large")
        assert closed_after(sock, buf) == b""  # answered before its body was taken: closed
    assert app.seen["capped"] == "too large"
    assert _ask(running, req("/capped", b"x" * LIMIT))[2] == b"fits"


def test_a_client_leaving_mid_body_raises_client_gone(direct: tuple[Running, DirectApp]) -> None:
    running, app = direct
    with running.connect() as sock:
        sock.sendall(req("/wait-body", b"").replace(b"0\r\n", b"500\r\n") + b"x" * 10)
        wait_until(lambda: running.server.tasks, timeout=5)
    wait_until(lambda: "wait_body" in app.seen, timeout=5)
    assert app.seen["wait_body"] == "gone"
    wait_until(lambda: not running.server.tasks, timeout=5)


def test_a_stream_goes_out_in_chunks(direct: tuple[Running, DirectApp]) -> None:
    running, _ = direct
    status, headers, body = _ask(running, req("/stream", method="GET"))
    assert status == b"HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


def test_wait_gone_returns_when_the_client_leaves(direct: tuple[Running, DirectApp]) -> None:
    running, app = direct
    leave_mid_stream(running, "/stream-until-gone", app.seen)
    assert app.seen["gone_seen"] is True and app.seen["after_gone"] == "no error"
    wait_until(lambda: not running.server.tasks, timeout=5)


def test_a_body_before_the_head_is_a_500(direct: tuple[Running, DirectApp]) -> None:
    running, _ = direct
    with running.connect() as sock:
        sock.sendall(req("/body-first", method="GET"))
        answer = closed_after(sock, bytearray())
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error")


def test_a_target_that_is_not_ascii_gets_400(direct: tuple[Running, DirectApp]) -> None:
    """llhttp refuses it first; the server checks again before a target reaches an app
    (the ASGI scope decodes it as ASCII)."""
    running, _ = direct
    with running.connect() as sock:
        sock.sendall(b"GET /echo\xff HTTP/1.1\r\nhost: t\r\n\r\n")
        answer = closed_after(sock, bytearray())
    assert answer.startswith(b"HTTP/1.1 400 Bad Request"), answer
    with socket.create_connection(running.addr, timeout=10) as sock:  # the server goes on
        sock.sendall(req("/echo", b"ok"))
        assert json.loads(read_answer(sock, bytearray())[2])["body"] == "ok"
