"""HTTP/1.1 over the daemon's Unix socket for the sync client, parsed by httptools.

The CLI runs this on every command, and its start-up time is the CLI's: the standard
library's http.client drags in `email` and `ssl` (about 45 ms here, more than the rest of
`ironrt ps`), while httptools (the C parser the daemon's own server parses with) imports in a
millisecond. One request per connection (`connection: close`), so there is no pool to keep.
"""

from __future__ import annotations

import socket
from collections import deque

import httptools


class Reply:
    """One response: status first, then the body as the daemon sends it (chunked or not)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: deque[bytes] = deque()
        self._headers_done = False
        self._complete = False
        self._framed = False
        self._cut = False
        self._line = b""
        while not self._headers_done:
            self._feed()
        self.status: int = self._parser.get_status_code()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True  # its end is in the body, not at the connection's close

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(bytes(body))

    def on_message_complete(self) -> None:
        self._complete = True

    def _feed(self) -> bool:
        """Read once from the socket; False at the end of the response."""
        if self._complete:
            return False
        data = self._sock.recv(65536)
        if not data:
            if not self._headers_done:
                raise ConnectionError("the daemon closed the connection without an answer")
            self._complete = True
            self._cut = self._framed  # closed before the body it announced was all there
            return False
        self._parser.feed_data(data)
        return True

    def read1(self, n: int = 65536) -> bytes:
        """The next piece of body, as soon as some arrived; b"" at the end."""
        while not self._chunks:
            if not self._feed():
                return b""
        chunk = self._chunks.popleft()
        if len(chunk) > n:
            self._chunks.appendleft(chunk[n:])
            chunk = chunk[:n]
        return chunk

    def read(self) -> bytes:
        """The whole body; ConnectionError if the daemon closed the connection before it
        was all sent (a truncated answer is never decoded as if it were whole)."""
        while self._feed():
            pass
        if self._cut:
            raise ConnectionError("the daemon closed the connection in the middle of its answer")
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def readline(self) -> bytes:
        while b"\n" not in self._line:
            chunk = self.read1()
            if not chunk:
                line, self._line = self._line, b""
                return line
            self._line += chunk
        line, _, self._line = self._line.partition(b"\n")
        return line + b"\n"

    def close(self) -> None:
        self._sock.close()


def request(
    path: str, method: str, target: str, body: bytes | None, timeout: float | None
) -> Reply:
    """Send one request to the Unix socket at `path`; the reply owns the socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        head = [f"{method} {target} HTTP/1.1", "host: ironrt", "connection: close"]
        if body is not None:
            head += ["content-type: application/json", f"content-length: {len(body)}"]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return Reply(sock)
    except BaseException:
        sock.close()
        raise
