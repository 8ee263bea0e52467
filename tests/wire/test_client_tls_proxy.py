"""TLS and proxies through real sockets: a local CA (made with `cryptography`), a TLS
origin, and a tiny proxy that forwards absolute-form requests and tunnels CONNECT."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ironrt.wire.client import ConnectError
from ironrt.wire.pool import Pool


def make_ca(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context for 127.0.0.1, client context trusting only this CA)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ironrt test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (tmp / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "leaf.pem", tmp / "key.pem")
    client = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
    return server, client


@dataclass
class Origin:
    """Answers every request with its own request line, on a kept-alive connection."""

    connections: int = 0
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                line = head.split(b"\r\n", 1)[0]
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(line), line))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


@dataclass
class Proxy:
    """Forwards absolute-form requests and tunnels CONNECT, all to one origin port."""

    target: int
    heads: list[bytes] = field(default_factory=list)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        if head.startswith(b"CONNECT "):
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_w.write(head)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
            except ConnectionError:
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))


@asynccontextmanager
async def serving(handler: Origin | Proxy, ctx: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    s = await asyncio.start_server(handler.serve, "127.0.0.1", 0, ssl=ctx)
    handler.port = s.sockets[0].getsockname()[1]
    try:
        yield handler.port
    finally:
        s.close()


async def get(p: Pool, url: str, proxy: str | None = None) -> bytes:
    resp = await p.request("GET", url, {"x-k": "v"}, b"", proxy)
    assert resp.status == 200
    return await resp.read()


async def test_https_is_verified_and_kept_alive(tmp_path: Path) -> None:
    server_ctx, client_ctx = make_ca(tmp_path)
    origin = Origin()
    async with serving(origin, server_ctx) as port:
        p = Pool(connect_timeout=2, read_timeout=2, ssl_context=client_ctx)
        assert await get(p, f"https://127.0.0.1:{port}/v1/a") == b"GET /v1/a HTTP/1.1"
        assert await get(p, f"https://127.0.0.1:{port}/v1/b") == b"GET /v1/b HTTP/1.1"
        assert origin.connections == 1
        await p.aclose()
        untrusting = Pool(connect_timeout=2, read_timeout=2)  # the system's CAs only
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await get(untrusting, f"https://127.0.0.1:{port}/v1/a")


async def test_an_http_target_through_a_proxy_goes_in_absolute_form_with_credentials() -> None:
    origin = Origin()
    async with serving(origin) as port:
        proxy = Proxy(port)
        async with serving(proxy) as pport:
            p = Pool(connect_timeout=2, read_timeout=2)
            via = f"http://us%40r:p%3Ass@127.0.0.1:{pport}"
            line = await get(p, f"http://127.0.0.1:{port}/v1/x?y=1", via)
            assert line == f"GET http://127.0.0.1:{port}/v1/x?y=1 HTTP/1.1".encode()
            await get(p, f"http://127.0.0.1:{port}/v1/z", via)
            assert len(proxy.heads) == 1  # the connection to the proxy was kept
            creds = base64.b64encode(b"us@r:p:ss")
            assert b"proxy-authorization: Basic " + creds + b"\r\n" in proxy.heads[0]
            assert f"host: 127.0.0.1:{port}\r\n".encode() in proxy.heads[0]
            await p.aclose()


async def test_an_https_target_through_a_proxy_is_tunnelled_with_connect(tmp_path: Path) -> None:
    server_ctx, client_ctx = make_ca(tmp_path)
    origin = Origin()
    async with serving(origin, server_ctx) as port:
        proxy = Proxy(port)
        async with serving(proxy) as pport:
            p = Pool(connect_timeout=2, read_timeout=2, ssl_context=client_ctx)
            via = f"http://u:pw@127.0.0.1:{pport}"
            assert await get(p, f"https://127.0.0.1:{port}/v1/a", via) == b"GET /v1/a HTTP/1.1"
            assert await get(p, f"https://127.0.0.1:{port}/v1/b", via) == b"GET /v1/b HTTP/1.1"
            (head,) = proxy.heads
            assert head.startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n".encode())
            assert b"proxy-authorization: Basic " + base64.b64encode(b"u:pw") in head
            assert origin.connections == 1
            await p.aclose()


async def test_a_proxy_that_refuses_connect_is_a_connect_error() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    s = await asyncio.start_server(refuse, "127.0.0.1", 0)
    pport = s.sockets[0].getsockname()[1]
    p = Pool(connect_timeout=2, read_timeout=2)
    with pytest.raises(ConnectError, match=r"refused CONNECT 127\.0\.0\.1:1: HTTP 407"):
        await get(p, "https://127.0.0.1:1/", f"http://127.0.0.1:{pport}")
    s.close()
