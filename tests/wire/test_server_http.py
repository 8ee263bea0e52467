"""The wire server's HTTP/1.1 behaviour, through real sockets against a real `Server`
running its own event loop in a thread: framing, keep-alive, pipelining, 100-continue,
chunked bodies, disconnects, limits, backpressure, app errors and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ironrt.server import bind_tcp
from ironrt.tempdaemon import wait_until
from ironrt.wire.connection import HEAD_LIMIT
from ironrt.wire.guard import ConnectionLimits
from ironrt.wire.server import Server

Scope = dict[str, Any]

#: The streamed answer a slow reader does not read, and its pieces.
BIG = 64 * 1024 * 1024
PIECE = 64 * 1024


class Writes:
    """A transport stand-in counting `write` calls (to check one write per answer)."""

    def __init__(self, real: asyncio.Transport) -> None:
        self.real = real
        self.count = 0

    def write(self, data: bytes) -> None:
        self.count += 1
        self.real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class App:
    """An ASGI app with one behaviour per path; what it saw is kept in `seen`."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.seen: dict[str, Any] = {}
        self.gate = threading.Event()

    def conn_of(self, scope: Scope) -> Any:
        assert self.server is not None
        return next(c for c in self.server.connections if c._client == scope["client"])

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope["path"]
        handler = getattr(self, "do_" + path.strip("/").replace("-", "_"), None)
        if handler is None:
            await self.answer(send, 404, b'{"error":"no such path"}')
            return
        await handler(scope, receive, send)

    @staticmethod
    async def answer(send: Any, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
        headers = [(b"content-type", b"application/json"), *extra]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def body_of(receive: Any) -> tuple[bytes, int]:
        parts, pieces = [], 0
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            parts.append(message["body"])
            pieces += 1
            if not message["more_body"]:
                return b"".join(parts), pieces

    async def do_echo(self, scope: Scope, receive: Any, send: Any) -> None:
        body, pieces = await self.body_of(receive)
        info = {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode(),
            "query": scope["query_string"].decode(),
            "version": scope["http_version"],
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
            "body": body.decode(),
            "pieces": pieces,
        }
        await self.answer(send, 200, json.dumps(info).encode())

    async def do_delay(self, scope: Scope, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.05)
        await self.do_echo(scope, receive, send)

    async def do_sleep(self, scope: Scope, receive: Any, send: Any) -> None:
        """An answer slower than the idle timeout (the upstream takes its time)."""
        await asyncio.sleep(float(scope["query_string"]))
        await self.do_echo(scope, receive, send)

    async def do_refuse(self, scope: Scope, receive: Any, send: Any) -> None:
        await self.answer(send, 403, b'{"error":"no"}')

    async def do_stream(self, scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"piece%d;" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def do_whole(self, scope: Scope, receive: Any, send: Any) -> None:
        """No content-length given, the body sent whole: the server counts it."""
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"all at once"})

    async def do_one_write(self, scope: Scope, receive: Any, send: Any) -> None:
        conn = self.conn_of(scope)
        writes = conn.transport = Writes(conn.transport)
        try:
            if scope["query_string"] == b"stream":
                await self.do_stream(scope, receive, send)
                self.seen["stream_writes"] = writes.count
            else:
                await self.answer(send, 200, b'{"one":"write"}')
                self.seen["plain_writes"] = writes.count
        finally:
            conn.transport = writes.real

    async def do_big(self, scope: Scope, receive: Any, send: Any) -> None:
        """A long stream to a client that does not read: `send` must hold the app back."""
        assert self.server is not None
        conn = self.conn_of(scope)
        self.seen["sent"] = 0
        self.seen["most_buffered"] = 0
        self.seen["held"] = False
        await send({"type": "http.response.start", "status": 200, "headers": []})
        piece = b"x" * PIECE
        for _ in range(BIG // PIECE):
            if conn.write_paused:
                self.seen["held"] = True
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            self.seen["sent"] += PIECE
            buffered = conn.transport.get_write_buffer_size()
            self.seen["most_buffered"] = max(self.seen["most_buffered"], buffered)
        await send({"type": "http.response.body", "body": b""})

    async def do_wait_body(self, scope: Scope, receive: Any, send: Any) -> None:
        """Reads a body that never ends: the client leaves mid-body."""
        got = []
        while True:
            message = await receive()
            got.append(message["type"])
            if message["type"] == "http.disconnect":
                break
        self.seen["mid_body"] = got

    async def do_gone_stream(self, scope: Scope, receive: Any, send: Any) -> None:
        """Streams, sees the client leave, and sends on: nothing raises into the app."""
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await self.body_of(receive)
        message = await receive()  # blocks until the client leaves
        try:
            for _ in range(3):
                await send({"type": "http.response.body", "body": b"more", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            self.seen["after_gone"] = message["type"]
        except Exception as exc:  # the assertion: nothing lands here
            self.seen["after_gone"] = repr(exc)

    async def do_boom(self, scope: Scope, receive: Any, send: Any) -> None:
        raise RuntimeError("broken app")

    async def do_boom_later(self, scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await asyncio.sleep(0.01)  # the piece is on the wire before the app breaks
        raise RuntimeError("broken mid-answer")

    async def do_bad_header(self, scope: Scope, receive: Any, send: Any) -> None:
        # Good headers around the bad one: the check reads them all, not just the first.
        bad = {
            b"value": (b"x-split", b"a\r\nset-cookie: evil=1"),
            b"name": (b"x-split: evil\r\nx", b"1"),
            b"space": (b"x evil", b"1"),
        }[scope["query_string"] or b"value"]
        await self.answer(send, 200, b"{}", (b"x-fine", b"ok"), bad, (b"x-also", b"fine"))

    async def do_held(self, scope: Scope, receive: Any, send: Any) -> None:
        """Starts its answer, then waits for the test before sending the body: with a
        content-length (`?length`), else as a stream."""
        headers = [(b"content-length", b"4")] if scope["query_string"] == b"length" else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self.seen["held"] = "started"
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"body"})

    async def do_gated(self, scope: Scope, receive: Any, send: Any) -> None:
        self.seen["gated"] = "waiting"
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        await self.answer(send, 200, b'{"gated":true}')


class Running:
    """A `Server` serving on 127.0.0.1 from its own loop in a thread."""

    def __init__(self, app: App, limits: ConnectionLimits, graceful: float = 3.0) -> None:
        sock = bind_tcp("127.0.0.1", 0)
        self.addr = sock.getsockname()
        self.server = Server(app, limits, graceful=graceful)
        app.server = self.server
        self.done = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                asyncio.run(self.server.serve([sock]))
            except BaseException as exc:  # reported by the test
                self.error = exc
            self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=5)

    def stop(self) -> None:
        self.server.should_exit = True
        assert self.done.wait(10), "the server did not stop"
        assert self.error is None, self.error

    def connect(self) -> socket.socket:
        return socket.create_connection(self.addr, timeout=10)


@pytest.fixture(scope="module")
def app() -> App:
    return App()


LIMITS = ConnectionLimits(header_timeout=5, body_timeout=5, keepalive_timeout=5)


@pytest.fixture(scope="module")
def running(app: App) -> Iterator[Running]:
    r = Running(app, LIMITS)
    yield r
    r.stop()


def read_answer(sock: socket.socket, buffered: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One answer off `sock` (status line, headers, body by length or chunks); what
    follows it stays in `buffered`."""
    while b"\r\n\r\n" not in buffered:
        _more(sock, buffered)
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    buffered[:] = rest
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode().partition(":")
        assert name == name.lower() and name not in headers, head
        headers[name] = value.strip()
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(buffered) < size:
            _more(sock, buffered)
        body = bytes(buffered[:size])
        del buffered[:size]
        return status, headers, body
    assert headers.get("transfer-encoding") == "chunked", head
    body = b""
    while True:
        while b"\r\n" not in buffered:
            _more(sock, buffered)
        line, _, _ = bytes(buffered).partition(b"\r\n")
        size = int(line, 16)
        need = len(line) + 2 + size + 2
        while len(buffered) < need:
            _more(sock, buffered)
        body += bytes(buffered[len(line) + 2 : len(line) + 2 + size])
        del buffered[:need]
        if size == 0:
            return status, headers, body


def continued(sock: socket.socket) -> bytearray:
    """Waits for the server's `100 Continue`, and nothing else; the buffer for what follows."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        _more(sock, buf)
    assert bytes(buf) == b"HTTP/1.1 100 Continue\r\n\r\n"
    buf.clear()
    return buf


def _more(sock: socket.socket, buffered: bytearray) -> None:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError(f"closed by the server; got {bytes(buffered)!r}")
    buffered += chunk


def closed_after(sock: socket.socket, buffered: bytearray, timeout: float = 5) -> bytes:
    """What the server sent before closing; fails if it does not close in time. A reset
    counts as the close (a server closing with unread input resets the connection)."""
    sock.settimeout(timeout)
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            buffered += chunk
    return bytes(buffered)


def req(path: str, body: bytes = b"", method: str = "POST", *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: t", *extra]
    if body or method == "POST":
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# -- framing and keep-alive ----------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(running: Running) -> None:
    with running.connect() as sock:
        buf = bytearray()
        for i in range(3):
            sock.sendall(req(f"/echo?i={i}", b'{"n":%d}' % i))
            status, headers, body = read_answer(sock, buf)
            assert status == b"HTTP/1.1 200 OK"
            info = json.loads(body)
            assert info["query"] == f"i={i}" and info["body"] == f'{{"n":{i}}}'
            assert "connection" not in headers
            assert "date" not in headers and "server" not in headers


def test_scope_carries_what_the_apps_read(running: Running) -> None:
    with running.connect() as sock:
        buf = bytearray()
        sock.sendall(req("/e%63ho?a=1&b=%2F", b"x", "POST", "X-Mixed-Case: Value"))
        _, _, body = read_answer(sock, buf)
    info = json.loads(body)
    assert info["path"] == "/echo" and info["raw_path"] == "/e%63ho"
    assert info["query"] == "a=1&b=%2F" and info["version"] == "1.1"
    assert ["x-mixed-case", "Value"] in info["headers"]


def test_connection_close_is_answered_then_closed(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(req("/echo", b"{}", "POST", "Connection: close"))
        buf = bytearray()
        status, headers, _ = read_answer(sock, buf)
        assert status.startswith(b"HTTP/1.1 200") and headers["connection"] == "close"
        assert closed_after(sock, buf) == b""


def test_http_1_0_closes_unless_keep_alive_is_asked(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"GET /echo HTTP/1.0\r\n\r\n")
        buf = bytearray()
        status, headers, body = read_answer(sock, buf)
        assert json.loads(body)["version"] == "1.0"
        assert headers["connection"] == "close"
        assert closed_after(sock, buf) == b""
    with running.connect() as sock:
        buf = bytearray()
        for _ in range(2):
            sock.sendall(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, _ = read_answer(sock, buf)
            assert status.startswith(b"HTTP/1.1 200") and headers["connection"] == "keep-alive"


def test_head_answers_carry_no_body(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(req("/echo", method="HEAD") + req("/echo", b"after"))
        buf = bytearray()
        sock.settimeout(10)
        while b"\r\n\r\n" not in buf:
            _more(sock, buf)
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: " in head
        buf[:] = rest  # the next answer follows the head directly: no body in between
        status, _, body = read_answer(sock, buf)
        assert status.startswith(b"HTTP/1.1 200") and json.loads(body)["body"] == "after"


def test_framing_chosen_by_the_server(running: Running) -> None:
    with running.connect() as sock:
        buf = bytearray()
        sock.sendall(req("/whole", method="GET"))
        _, headers, body = read_answer(sock, buf)
        assert headers["content-length"] == "11" and body == b"all at once"
        sock.sendall(req("/stream", method="GET"))
        _, headers, body = read_answer(sock, buf)
        assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
        assert body == b"piece0;piece1;piece2;"


def test_one_write_per_whole_answer_and_per_stream_piece(running: Running, app: App) -> None:
    with running.connect() as sock:
        buf = bytearray()
        sock.sendall(req("/one-write", method="GET"))
        _, _, body = read_answer(sock, buf)
        assert body == b'{"one":"write"}'
        sock.sendall(req("/one-write?stream", method="GET"))
        _, _, body = read_answer(sock, buf)
        assert body == b"piece0;piece1;piece2;"
    wait_until(lambda: "stream_writes" in app.seen)  # counted once its last send returns
    # Head and body in one write; a stream: head with its first piece, then one a piece
    # and one for the end.
    assert app.seen["plain_writes"] == 1
    assert app.seen["stream_writes"] == 4


@pytest.mark.parametrize("query", ["length", "stream"])
def test_a_head_goes_with_its_body_unless_the_length_is_unknown(query: str) -> None:
    """An answer of known length is of no use to the client before its body: its head
    waits for it (one write, no callback a call). A stream's head goes at the next loop
    turn: its first event may be long in coming, and the client learns the status."""
    app = App()
    r = Running(app, LIMITS)
    app.gate.clear()
    try:
        with r.connect() as sock:
            sock.sendall(req(f"/held?{query}", method="GET"))
            wait_until(lambda: app.seen.get("held") == "started", timeout=5)
            sock.settimeout(0.3)
            try:
                early = sock.recv(65536)
            except TimeoutError:
                early = b""
            app.gate.set()
            sock.settimeout(10)
            buf = bytearray(early)
            status, headers, body = read_answer(sock, buf)
        assert status == b"HTTP/1.1 200 OK" and body == b"body"
        if query == "length":
            assert early == b""
            assert headers["content-length"] == "4"
        else:
            assert early.startswith(b"HTTP/1.1 200 OK\r\n") and early.endswith(b"\r\n\r\n")
            assert headers["transfer-encoding"] == "chunked"
        # The answer's task left the server's set of answers in flight as it ended.
        wait_until(lambda: not r.server.tasks, timeout=5)
    finally:
        app.gate.set()
        r.stop()


def test_answers_in_flight_are_tracked_until_they_end(running: Running, app: App) -> None:
    app.gate.clear()
    app.seen.pop("gated", None)
    try:
        with running.connect() as busy, running.connect() as other:
            busy.sendall(req("/gated", method="GET"))
            wait_until(lambda: app.seen.get("gated") == "waiting", timeout=5)
            assert len(running.server.tasks) == 1
            buf = bytearray()
            for i in range(20):
                other.sendall(req("/echo", str(i).encode()))
                assert json.loads(read_answer(other, buf)[2])["body"] == str(i)
            # The 20 answered ones are gone (the last a moment after its answer).
            wait_until(lambda: len(running.server.tasks) == 1, timeout=5)
            app.gate.set()
            assert read_answer(busy, bytearray())[2] == b'{"gated":true}'
        wait_until(lambda: not running.server.tasks, timeout=5)
    finally:
        app.gate.set()


def test_tcp_nodelay_is_set_on_accepted_connections(running: Running) -> None:
    with running.connect() as sock:
        port = sock.getsockname()[1]
        wait_until(lambda: any(c._client[1] == port for c in running.server.connections))
        (conn,) = [c for c in running.server.connections if c._client[1] == port]
        raw = conn.transport.get_extra_info("socket")
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_slow_answer_on_a_kept_alive_connection_is_not_cut_as_idle() -> None:
    """The idle timer runs between requests only, never while one is answered."""
    r = Running(App(), ConnectionLimits(keepalive_timeout=0.2))
    try:
        with r.connect() as sock:
            buf = bytearray()
            sock.sendall(req("/echo", b"1"))
            assert read_answer(sock, buf)[0].startswith(b"HTTP/1.1 200")
            sock.sendall(req("/sleep?0.6", b"2"))
            status, _, body = read_answer(sock, buf)
            assert status.startswith(b"HTTP/1.1 200") and json.loads(body)["body"] == "2"
            assert closed_after(sock, buf) == b""  # then idle: closed after 0.2 s
    finally:
        r.stop()


# -- pipelining, 100-continue, chunked bodies ------------------------------------------------


def test_pipelined_requests_are_answered_in_order(running: Running) -> None:
    with running.connect() as sock:
        # The first is slow: the others wait their turn, never overtake nor interleave.
        sock.sendall(req("/delay", b"one") + req("/stream", method="GET") + req("/echo", b"three"))
        buf = bytearray()
        answers = [read_answer(sock, buf) for _ in range(3)]
    assert json.loads(answers[0][2])["body"] == "one"
    assert answers[1][2] == b"piece0;piece1;piece2;"
    assert json.loads(answers[2][2])["body"] == "three"


def test_100_continue_is_sent_when_the_app_asks_for_the_body(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(req("/echo", b"", "POST", "Expect: 100-continue").replace(b"0\r\n", b"5\r\n"))
        buf = continued(sock)
        sock.sendall(b"hello")
        status, _, body = read_answer(sock, buf)
        assert status.startswith(b"HTTP/1.1 200") and json.loads(body)["body"] == "hello"


def test_100_continue_is_never_sent_for_a_refusal(running: Running) -> None:
    with running.connect() as sock:
        head = req("/refuse", b"", "POST", "Expect: 100-continue").replace(b"0\r\n", b"9\r\n")
        sock.sendall(head)
        buf = bytearray()
        status, _, _ = read_answer(sock, buf)
        assert status.startswith(b"HTTP/1.1 403")  # no 100 before it
        assert closed_after(sock, buf) == b""  # the body will not come: closed


def test_chunked_request_bodies_are_decoded(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
        buf = bytearray()
        _, _, body = read_answer(sock, buf)
    assert json.loads(body)["body"] == "hello world"


# -- disconnects -----------------------------------------------------------------------------


def test_a_client_leaving_mid_body_is_seen_and_nothing_leaks(running: Running, app: App) -> None:
    with running.connect() as sock:
        sock.sendall(req("/wait-body", b"").replace(b"0\r\n", b"1000\r\n") + b"x" * 10)
        wait_until(lambda: running.server.tasks, timeout=5)
    wait_until(lambda: "mid_body" in app.seen, timeout=5)
    assert app.seen["mid_body"][-1] == "http.disconnect"
    wait_until(lambda: not running.server.tasks, timeout=5)


def leave_mid_stream(running: Running, path: str, seen: dict[str, Any]) -> None:
    """Asks `path` for a stream, leaves after its `first` piece, and waits until the app
    says (`seen["after_gone"]`) it went on without the client."""
    with running.connect() as sock:
        sock.sendall(req(path, method="GET"))
        buf = bytearray()
        while b"first" not in buf:
            _more(sock, buf)
    wait_until(lambda: "after_gone" in seen, timeout=5)


def test_sending_after_the_client_left_is_silently_dropped(running: Running, app: App) -> None:
    leave_mid_stream(running, "/gone-stream", app.seen)
    assert app.seen["after_gone"] == "http.disconnect"
    wait_until(lambda: not running.server.tasks, timeout=5)


# -- limits and refusals ---------------------------------------------------------------------


def test_headers_over_the_cap_get_431(running: Running) -> None:
    with running.connect() as sock:
        big = "x-big: " + "a" * (HEAD_LIMIT + 10)
        sock.sendall(req("/echo", b"{}", "POST", big))
        answer = closed_after(sock, bytearray())
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert b'"code":"request_header_fields_too_large"' in answer


def test_headers_trickling_past_the_cap_get_431(running: Running) -> None:
    """Never completed, the head is cut as soon as it outgrows the cap."""
    with running.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nx-many: ")
        answer = b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(2 * HEAD_LIMIT // 4096):
                sock.sendall(b"a" * 4096)
        answer = closed_after(sock, bytearray())
    assert answer.startswith(b"HTTP/1.1 431")


def test_many_small_headers_past_the_cap_get_431(running: Running) -> None:
    """Counted exactly once past the cap: no one header is large, all of them are."""
    with running.connect() as sock:
        many = [f"x-h{i}: " + "v" * 100 for i in range(HEAD_LIMIT // 100)]
        sock.sendall(req("/echo", b"{}", "POST", *many))
        answer = closed_after(sock, bytearray())
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]


def test_a_head_behind_a_large_body_is_judged_by_its_own_size(running: Running) -> None:
    """A pipelined head that arrives with the end of a large body: the bytes of that
    body are not the head's (a head just under the cap is served, one over it is not)."""
    body = b"b" * (3 * HEAD_LIMIT)
    under = "x-fill: " + "u" * (HEAD_LIMIT - 1024)
    over = "x-fill: " + "o" * (HEAD_LIMIT + 1024)
    with running.connect() as sock:
        sock.sendall(req("/echo", body) + req("/echo", b"second", "POST", under))
        buf = bytearray()
        first, second = read_answer(sock, buf), read_answer(sock, buf)
        assert json.loads(first[2])["body"] == body.decode()
        assert second[0].startswith(b"HTTP/1.1 200") and json.loads(second[2])["body"] == "second"
        # The next head starts in the body's last read and ends in a later one.
        head = req("/echo", b"fourth", "POST", under)
        sock.sendall(req("/echo", body) + head[:40])
        assert json.loads(read_answer(sock, buf)[2])["body"] == body.decode()
        sock.sendall(head[40:])
        assert json.loads(read_answer(sock, buf)[2])["body"] == "fourth"
        sock.sendall(req("/echo", body) + req("/echo", b"third", "POST", over))
        assert json.loads(read_answer(sock, buf)[2])["body"] == body.decode()
        assert closed_after(sock, buf).startswith(b"HTTP/1.1 431")


def test_invalid_requests_get_400(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\ncontent-length: nope\r\n\r\n")
        answer = closed_after(sock, bytearray())
    assert answer.startswith(b"HTTP/1.1 400 Bad Request")
    assert b'"type":"invalid_request_error"' in answer


@pytest.mark.parametrize(
    "head",
    [
        b"GET /echo HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        b"CONNECT api.openai.com:443 HTTP/1.1\r\nhost: api.openai.com:443\r\n\r\n",
    ],
)
def test_upgrades_and_connect_are_refused(running: Running, head: bytes, app: App) -> None:
    with running.connect() as sock:
        sock.sendall(head)
        answer = closed_after(sock, bytearray())
    assert answer.startswith(b"HTTP/1.1 501 Not Implemented"), answer


def test_a_refusal_behind_pipelined_requests_comes_in_its_turn(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(req("/delay", b"first") + b"BROKEN\x01 / HTTP/1.1\r\n\r\n")
        buf = bytearray()
        status, _, body = read_answer(sock, buf)
        assert status.startswith(b"HTTP/1.1 200") and json.loads(body)["body"] == "first"
        assert closed_after(sock, buf).startswith(b"HTTP/1.1 400")


# -- backpressure ----------------------------------------------------------------------------


def test_a_client_that_does_not_read_holds_the_stream_back(running: Running, app: App) -> None:
    """The app's sends wait on the transport's high-water mark: what the server buffers
    stays near it, and the app stops far short of the whole answer until the client reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(running.addr)
    try:
        sock.sendall(req("/big", method="GET"))
        # The client reads nothing until the server has paused writing to it.
        wait_until(lambda: app.seen.get("held", False), timeout=10)
        assert app.seen["sent"] < BIG // 4, app.seen
        got = 0
        sock.settimeout(10)
        while got < BIG:  # once read, the whole answer comes through
            got += len(sock.recv(1 << 20))
        wait_until(lambda: app.seen["sent"] == BIG, timeout=10)
        # Held back all along: the server's buffer never grew past its high-water mark
        # and one framed piece (without backpressure it would hold most of the 64 MiB).
        assert app.seen["most_buffered"] <= 2 * PIECE + 1024, app.seen
    finally:
        sock.close()


# -- app errors ------------------------------------------------------------------------------


def test_an_app_failing_before_answering_gets_a_500_and_close(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(req("/boom", method="GET"))
        answer = closed_after(sock, bytearray())
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error")
    assert b'"code":"internal_error"' in answer and b"broken app" not in answer


def test_an_app_failing_mid_answer_has_its_connection_cut(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(req("/boom-later", method="GET"))
        answer = closed_after(sock, bytearray())
    assert answer.startswith(b"HTTP/1.1 200") and b"partial" in answer
    assert not answer.endswith(b"0\r\n\r\n")  # cut, not completed


@pytest.mark.parametrize("which", ["value", "name", "space"])
def test_a_header_with_control_characters_is_never_sent(running: Running, which: str) -> None:
    with running.connect() as sock:
        sock.sendall(req(f"/bad-header?{which}", method="GET"))
        answer = closed_after(sock, bytearray())
    assert answer.startswith(b"HTTP/1.1 500") and b"evil" not in answer


# -- shutdown --------------------------------------------------------------------------------


def test_shutdown_lets_the_answer_in_flight_finish() -> None:
    app = App()
    r = Running(app, LIMITS, graceful=5)
    app.gate.clear()
    app.seen.pop("gated", None)
    busy, idle = r.connect(), r.connect()
    try:
        busy.sendall(req("/gated", method="GET"))
        wait_until(lambda: app.seen.get("gated") == "waiting", timeout=5)
        r.server.should_exit = True
        assert closed_after(idle, bytearray()) == b""  # idle: closed at once
        with pytest.raises(OSError):  # no longer accepting
            r.connect().close()
        app.gate.set()
        answer = closed_after(busy, bytearray())
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"gated":true}')
        assert b"connection: close" in answer
        assert r.done.wait(5)
    finally:
        busy.close()
        idle.close()
        app.gate.set()


def test_shutdown_cuts_what_outlives_the_graceful_timeout() -> None:
    app = App()
    r = Running(app, LIMITS, graceful=0.3)
    app.gate.clear()
    app.seen.pop("gated", None)
    began = time.monotonic()
    try:
        with r.connect() as busy:
            busy.sendall(req("/gated", method="GET"))
            wait_until(lambda: app.seen.get("gated") == "waiting", timeout=5)
            r.stop()
            assert closed_after(busy, bytearray()) == b""
        assert time.monotonic() - began < 5
        assert not r.server.tasks
    finally:
        app.gate.set()
