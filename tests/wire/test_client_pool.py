"""The upstream client and its keep-alive pool against real local servers over TCP.

Each test starts a tiny asyncio server whose handler writes the exact bytes a test needs
(a stale keep-alive, a close-delimited body, a gzip body, a stalled stream), and counts
the connections it accepted: reuse is asserted from the server's side, not the pool's.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httptools
import pytest

from ironrt.wire.client import (
    HIGH_WATER,
    ConnectError,
    ConnectTimeout,
    ReadTimeout,
    RemoteProtocolError,
    request_head,
)
from ironrt.wire.pool import Pool


@dataclass
class Req:
    method: bytes
    url: bytes
    headers: dict[bytes, bytes]
    body: bytes
    conn: int  # which accepted connection (1-based) carried it


Handler = Callable[[Req, asyncio.StreamWriter], Awaitable[bool]]  # True: close after


@dataclass
class Server:
    handler: Handler
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: list[Req] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        self.writers.append(writer)
        done: list[Req] = []
        cur: dict[str, object] = {}

        class P:
            def on_message_begin(self) -> None:
                cur.update(url=b"", headers={}, body=b"")

            def on_url(self, url: bytes) -> None:
                cur["url"] = cur["url"] + url  # type: ignore[operator]

            def on_header(self, n: bytes, v: bytes) -> None:
                cur["headers"][n.lower()] = v  # type: ignore[index]

            def on_body(self, b: bytes) -> None:
                cur["body"] = cur["body"] + b  # type: ignore[operator]

            def on_message_complete(self) -> None:
                done.append(
                    Req(parser.get_method(), cur["url"], cur["headers"], cur["body"], number)  # type: ignore[arg-type]
                )

        parser = httptools.HttpRequestParser(P())
        try:
            while data := await reader.read(65536):
                parser.feed_data(data)
                while done:
                    req = done.pop(0)
                    self.requests.append(req)
                    if await self.handler(req, writer):
                        return
        except (ConnectionError, httptools.HttpParserError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[Server]:
    srv = Server(handler)
    s = await asyncio.start_server(srv.serve, "127.0.0.1", 0)
    srv.port = s.sockets[0].getsockname()[1]
    try:
        yield srv
    finally:
        for w in srv.writers:
            w.close()
        s.close()


def answer(body: bytes = b'{"ok":true}', *extra: bytes, status: bytes = b"200 OK") -> bytes:
    head = b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n" % len(body)
    return head + b"".join(h + b"\r\n" for h in extra) + b"\r\n" + body


async def ok(req: Req, w: asyncio.StreamWriter) -> bool:
    w.write(answer(b"echo:" + req.body))
    return False


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.005)


def pool(**kw: float) -> Pool:
    return Pool(connect_timeout=kw.pop("connect", 2.0), read_timeout=kw.pop("read", 5.0), **kw)  # type: ignore[arg-type]


async def call(p: Pool, url: str, body: bytes = b"x", **headers: str) -> tuple[int, bytes]:
    resp = await p.request("POST", url, dict(headers), body)
    return resp.status, await resp.read()


# ---- keep-alive ---------------------------------------------------------------------------


async def test_a_second_call_reuses_the_connection_and_sends_what_it_is_given() -> None:
    async with server(ok) as srv:
        p = pool()
        assert await call(p, srv.url + "/v1/./a%2Fb?q=%20x", b"one", **{"x-k": "v"}) == (
            200,
            b"echo:one",
        )
        assert await call(p, srv.url + "/v1/chat", b"two") == (200, b"echo:two")
        assert srv.connections == 1 and p.opened == 1
        first = srv.requests[0]
        assert first.url == b"/v1/./a%2Fb?q=%20x"  # as given: no dot-segments, no re-quoting
        assert first.headers[b"host"] == f"127.0.0.1:{srv.port}".encode()
        assert first.headers[b"content-length"] == b"3" and first.headers[b"x-k"] == b"v"
        await p.aclose()


def test_the_request_is_one_block_and_refuses_a_newline_in_a_header() -> None:
    head = request_head("POST", "/v1/x", "h:1", {"a": "b"}, 2)
    assert head == b"POST /v1/x HTTP/1.1\r\nhost: h:1\r\na: b\r\ncontent-length: 2\r\n\r\n"
    assert b"content-length" not in request_head("GET", "/", "h", {}, 0)
    with pytest.raises(ValueError, match="x-api-key") as err:
        request_head("POST", "/", "h", {"x-api-key": "sk-secret\r\nevil: 1"}, 0)
    assert "sk-secret" not in str(err.value)


async def test_an_idle_connection_the_server_closes_is_dropped_and_the_next_call_reconnects() -> (
    None
):
    closing = asyncio.Event()

    async def close_when_told(req: Req, w: asyncio.StreamWriter) -> bool:
        w.write(answer())
        await w.drain()
        if req.conn == 1:
            await closing.wait()
            return True  # the server's idle timeout: closes the kept-alive connection
        return False

    async with server(close_when_told) as srv:
        p = pool()
        await call(p, srv.url + "/a")
        assert p.idle_count() == 1
        closing.set()
        await until(lambda: p.idle_count() == 0)  # the EOF was seen while idle
        assert await call(p, srv.url + "/b") == (200, b'{"ok":true}')
        assert srv.connections == 2
        await p.aclose()


async def test_a_request_on_a_connection_closed_before_any_byte_is_retried_once_fresh() -> None:
    async def drop_second_on_first(req: Req, w: asyncio.StreamWriter) -> bool:
        if req.conn == 1 and len(srv.requests) == 2:
            return True  # read, then closed without a byte: never processed
        w.write(answer(req.url))
        return False

    async with server(drop_second_on_first) as srv:
        p = pool()
        await call(p, srv.url + "/a")
        assert await call(p, srv.url + "/b") == (200, b"/b")
        assert [(r.url, r.conn) for r in srv.requests] == [(b"/a", 1), (b"/b", 1), (b"/b", 2)]
        await p.aclose()


async def test_a_fresh_connection_closed_before_the_answer_is_not_retried() -> None:
    async def drop(req: Req, w: asyncio.StreamWriter) -> bool:
        return True

    async with server(drop) as srv:
        p = pool()
        with pytest.raises(RemoteProtocolError, match="without an answer"):
            await call(p, srv.url + "/a")
        assert len(srv.requests) == 1  # sent, maybe billed: the caller decides
        await p.aclose()


@pytest.mark.parametrize(
    "raw",
    [
        answer(b"bye", b"connection: close"),
        b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nbye",  # close-delimited
        b"HTTP/1.1 200 OK\r\n\r\nbye",  # 1.1, no length: close-delimited too
    ],
)
async def test_an_answer_that_ends_the_connection_is_read_whole_and_not_reused(
    raw: bytes,
) -> None:
    async def once(req: Req, w: asyncio.StreamWriter) -> bool:
        w.write(raw)
        return True

    async with server(once) as srv:
        p = pool()
        assert await call(p, srv.url + "/a") == (200, b"bye")
        assert await call(p, srv.url + "/b") == (200, b"bye")
        assert srv.connections == 2 and p.idle_count() == 0
        await p.aclose()


async def test_a_cut_body_is_a_protocol_error() -> None:
    async def cut(req: Req, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
        return True

    async with server(cut) as srv:
        p = pool()
        resp = await p.request("POST", srv.url + "/", {}, b"")
        with pytest.raises(RemoteProtocolError, match="not completed"):
            await resp.read()
        await p.aclose()


# ---- bodies -------------------------------------------------------------------------------


async def test_chunked_gzip_deflate_and_interim_answers() -> None:
    text = b"hello " * 1000
    bodies = {
        b"/chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
        b"/gzip": answer(gzip.compress(text), b"content-encoding: gzip"),
        b"/deflate": answer(zlib.compress(text), b"content-encoding: deflate"),
        b"/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\n"
        + answer(b"final"),
    }

    async def pick(req: Req, w: asyncio.StreamWriter) -> bool:
        w.write(bodies[req.url])
        return False

    async with server(pick) as srv:
        p = pool()
        assert await call(p, srv.url + "/chunked") == (200, b"hello world")
        assert await call(p, srv.url + "/gzip") == (200, text)
        assert await call(p, srv.url + "/deflate") == (200, text)
        resp = await p.request("GET", srv.url + "/interim", {}, b"")
        assert resp.status == 200 and (b"link", b"x") not in resp.headers
        assert await resp.read() == b"final"
        assert srv.connections == 1  # every one of them kept the connection
        await p.aclose()


async def test_a_stream_yields_each_chunk_as_it_arrives() -> None:
    second = asyncio.Event()

    async def stream(req: Req, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\nevent 1\r\n")
        await second.wait()  # only once the client has the first
        w.write(b"7\r\nevent 2\r\n0\r\n\r\n")
        return False

    async with server(stream) as srv:
        p = pool()
        resp = await p.request("POST", srv.url + "/", {}, b"")
        chunks = resp.iter_bytes()
        assert await asyncio.wait_for(anext(chunks), 5) == b"event 1"
        second.set()
        assert [c async for c in chunks] == [b"event 2"]
        assert p.idle_count() == 1  # the body ended: back in the pool
        await p.aclose()


async def test_a_reader_that_falls_behind_pauses_the_socket() -> None:
    size = 32 * 1024 * 1024  # far above what the kernel's socket buffers can hold

    async def big(req: Req, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"z" * size)
        await w.drain()
        return False

    async with server(big) as srv:
        p = pool()
        resp = await p.request("POST", srv.url + "/", {}, b"")
        conn = resp._conn
        await until(lambda: conn._paused)
        assert conn._buffered <= HIGH_WATER + 256 * 1024  # stopped near the mark...
        assert srv.writers[0].transport.get_write_buffer_size() > size // 2  # ...the rest waits
        assert len(await resp.read()) == size
        assert not conn._paused
        await p.aclose()


async def test_closing_an_unread_answer_closes_its_connection_a_read_one_is_pooled() -> None:
    async def partial(req: Req, w: asyncio.StreamWriter) -> bool:
        w.write(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc" if req.url == b"/p" else answer()
        )
        return False

    async with server(partial) as srv:
        p = pool()
        resp = await p.request("POST", srv.url + "/p", {}, b"")
        await resp.aclose()
        await until(lambda: p.size == 0)
        await call(p, srv.url + "/")
        assert p.idle_count() == 1 and srv.connections == 2
        await p.aclose()


# ---- timeouts and errors ------------------------------------------------------------------


async def test_timeouts_no_head_a_stalled_stream_and_a_tls_handshake_that_never_ends() -> None:
    over = asyncio.Event()

    async def stall(req: Req, w: asyncio.StreamWriter) -> bool:
        if req.url == b"/mid":
            w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
        await over.wait()
        return True

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await over.wait()
        w.close()

    mute = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server(stall) as srv:
        p = pool(read=0.2, connect=0.2)
        with pytest.raises(ReadTimeout):
            await call(p, srv.url + "/head")
        resp = await p.request("POST", srv.url + "/mid", {}, b"")
        chunks = resp.iter_bytes()
        assert await anext(chunks) == b"a"
        with pytest.raises(ReadTimeout, match=r"no data for 0\.2 s"):
            await anext(chunks)
        with pytest.raises(ConnectTimeout):  # TCP connects; TLS never answers
            await call(p, f"https://127.0.0.1:{mute.sockets[0].getsockname()[1]}/")
        await p.aclose()
        over.set()
    mute.close()


async def test_a_refused_connection_is_a_connect_error() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = pool()
    with pytest.raises(ConnectError):
        await call(p, f"http://127.0.0.1:{port}/")
    assert p.size == 0


# ---- pool limits --------------------------------------------------------------------------


async def test_the_pool_caps_connections_and_closes_idle_ones_after_keepalive() -> None:
    release = asyncio.Event()

    async def held(req: Req, w: asyncio.StreamWriter) -> bool:
        await release.wait()
        w.write(answer())
        return False

    async with server(held) as srv:
        p = pool(max_connections=2, keepalive_s=0.3)
        calls = [asyncio.create_task(call(p, srv.url + "/")) for _ in range(3)]
        await until(lambda: len(srv.requests) == 2 and len(p._waiters) == 1)
        assert srv.connections == 2  # the third waits for a free place
        release.set()
        assert [c[0] for c in await asyncio.gather(*calls)] == [200, 200, 200]
        assert srv.most_open == 2 and srv.connections == 2
        await until(lambda: srv.open_now == 0, timeout=3)  # the keep-alive ran out
        assert p.size == 0
        await p.aclose()
