"""The one path the router decides on and forwards: the request target, made canonical.

The endpoint decides what a call costs (or whether it may pass at all), so the path it is
decided on must be exactly the path the provider serves. HTTP clients and servers
normalise paths in ways a naive router does not: a general upstream client (aiohttp,
through yarl, did) resolves `.` and `..` segments and decodes `%2E`, so
`/v1/./chat/completions` would be decided as an unmetered path and billed upstream as a
chat call, and `/v1/models/../files` as the free model list while the provider served
files. So:

- The decision is made on the raw target (`scope["raw_path"]`), never on the server's
  percent-decoded `scope["path"]`, in which `%2F` and `/` look alike.
- `canonical_path` resolves dot-segments (RFC 3986 `remove_dot_segments`), drops a
  trailing slash and decodes percent-encoded unreserved characters (`%63hat` is `chat`).
  What has no single meaning is refused: encoded separators and dots (`%2F`, `%5C`,
  `%2E`), backslashes, empty segments (`//`), NUL and control characters (raw or
  encoded), characters a URI path cannot hold, a `..` above the root, and malformed
  escapes.
- The result goes upstream byte for byte: the upstream client (`ironrt.wire.pool`)
  writes the URL's path and query into the request line as given, re-normalising nothing.
- The query string is forwarded as received; it never carries a path (the target's path
  ends at the first `?`), and `check_query` refuses only what could not go out verbatim.
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["BadPath", "canonical_path", "check_query", "describe_target", "raw_target"]

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
#: Characters a path segment may hold literally (RFC 3986 `pchar` without `%`).
_SEGMENT = _UNRESERVED | frozenset(b"!$&'()*+,;=:@")
_HEX = frozenset(b"0123456789abcdefABCDEF")
#: Decoded, these would change where the path goes (or end it): refused when encoded.
_NEVER_ENCODED = frozenset(b"./\\")
#: Printable ASCII except `#` (a query must not start a fragment on its way upstream).
_QUERY = frozenset(range(0x21, 0x7F)) - {ord("#")}
_SAFE_FALLBACK = "/!$&'()*+,;=:@-._~"
#: `bytes.translate` deletes these: a path of nothing else may take the fast path.
_PLAIN = bytes(sorted(_SEGMENT | {ord("/")}))


class BadPath(ValueError):
    """The request target has no single meaning: answered 404, never forwarded."""


def canonical_path(raw: bytes) -> str:
    """The canonical form of a raw request path (no query), or BadPath saying why.

    A trailing slash is dropped (`/v1/models/` is `/v1/models`): the endpoints are
    decided without it, so the provider is sent the path without it too.
    """
    if (
        raw.startswith(b"/")
        and not raw.translate(None, _PLAIN)
        and b"//" not in raw
        and b"/." not in raw
        and (len(raw) == 1 or not raw.endswith(b"/"))
    ):
        return raw.decode("ascii")  # what every SDK sends: already canonical
    if not raw.startswith(b"/"):
        raise BadPath("the path does not start with /")
    segments = raw[1:].split(b"/")
    out: list[str] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == b"..":
            if not out:
                raise BadPath("`..` climbs above the root")
            out.pop()
        elif segment == b"":
            if i != last:
                raise BadPath("empty path segment (`//`)")
        elif segment != b".":
            out.append(_segment(segment))
    return "/" + "/".join(out)


def _segment(segment: bytes) -> str:
    if b"%" not in segment:
        for byte in segment:
            if byte not in _SEGMENT:
                raise BadPath(_bad_byte(byte))
        return segment.decode("ascii")
    out: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        byte = segment[i]
        if byte != 0x25:  # not `%`
            if byte not in _SEGMENT:
                raise BadPath(_bad_byte(byte))
            out.append(chr(byte))
            i += 1
            continue
        pair = segment[i + 1 : i + 3]
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            raise BadPath("malformed percent-escape")
        value = int(pair, 16)
        if value in _NEVER_ENCODED:
            raise BadPath(f"encoded {chr(value)!r} (%{value:02X}) in the path")
        if value < 0x20 or value == 0x7F:
            raise BadPath("encoded control character in the path")
        out.append(chr(value) if value in _UNRESERVED else f"%{value:02X}")
        i += 3
    return "".join(out)


def _bad_byte(byte: int) -> str:
    if byte == 0x5C:
        return "backslash in the path"
    if byte < 0x20 or byte == 0x7F:
        return "control character in the path"
    if byte > 0x7E:
        return "non-ASCII byte in the path"
    return f"{chr(byte)!r} in the path"


def check_query(raw: bytes) -> str:
    """The query string as it goes upstream (unchanged), or BadPath."""
    for byte in raw:
        if byte not in _QUERY:
            raise BadPath("the query string holds a space, control, non-ASCII byte or `#`")
    return raw.decode("ascii")


def raw_target(scope: dict[str, object]) -> bytes:
    """The raw path of an ASGI request; rebuilt from the decoded one if the server gave
    none (a decoded `%2F` then counts as the separator the server took it for)."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.split(b"?", 1)[0]  # some servers leave the query on; `?` ends a path
    path = scope.get("path")
    return quote(path if isinstance(path, str) else "/", safe=_SAFE_FALLBACK).encode("ascii")


def describe_target(raw: bytes, limit: int = 200) -> str:
    """A raw path fit for a log line or a trace: ASCII, escapes visible, bounded."""
    text = raw[:limit].decode("ascii", "backslashreplace")
    text = "".join(c if 0x20 <= ord(c) < 0x7F else f"\\x{ord(c):02x}" for c in text)
    return text + ("…" if len(raw) > limit else "")
