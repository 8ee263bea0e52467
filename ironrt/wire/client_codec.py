"""What the upstream client writes and how it decodes a body: the request as one block
(one write with its body), and gzip/deflate content codings. Parsing is httptools'."""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from ironrt.wire.client_errors import RemoteProtocolError

__all__ = ["body_decoder", "request_head"]

#: Methods after which a request without a body carries no content-length (aiohttp's).
_NO_LENGTH_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "CONNECT", "TRACE"})


def request_head(
    method: str,
    target: str,
    host: str,
    headers: Mapping[str, str],
    body_length: int,
    extra: str = "",
    lines: bytes = b"",
) -> bytes:
    """The request line and headers as one block, ready for one write with the body.

    Names and values go as given (the router filtered them); `extra` is pre-formatted
    lines (a proxy's credentials). A CR or LF inside any part would split the block into
    lines of the caller's choosing, so it is refused, naming no value (values hold keys).
    `lines` are header lines the caller encoded and checked already (the agent's headers
    as llhttp parsed them: no CR or LF can be in them), added as they are.
    """
    given = [f"{k}: {v}\r\n" for k, v in headers.items()]
    if body_length or method not in _NO_LENGTH_METHODS:
        given.append(f"content-length: {body_length}\r\n")
    text = f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n{''.join(given)}{extra}"
    expected = len(given) + 2 + extra.count("\r\n")
    if text.count("\n") != expected or text.count("\r") != expected:
        bad = [k for k, v in headers.items() if "\r" in k + v or "\n" in k + v]
        raise ValueError(f"a newline in the request line or header {bad or '(target)'}")
    try:
        head = text.encode("latin-1")
    except UnicodeEncodeError:
        head = text.encode("utf-8")
    return head + lines + b"\r\n"


def body_decoder(encoding: bytes) -> zlib._Decompress | None:
    """gzip and deflate are decoded (we ask for identity, but a server may compress
    anyway; aiohttp decoded them too). Any other coding cannot be relayed as sent: its
    header is dropped on the way back, so the bytes would be garbage to the agent."""
    if encoding in (b"", b"identity"):
        return None
    if encoding in (b"gzip", b"x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == b"deflate":
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header, detected
    raise RemoteProtocolError(f"unsupported content-encoding {encoding.decode('latin-1')!r}")
