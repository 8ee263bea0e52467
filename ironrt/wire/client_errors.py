"""The upstream client's errors, named as the router's traces name them (`error_kind`
in transports/http.py reads the class name).

    HTTPError
    ├── ConnectError          nothing was sent (refused, DNS, TLS, proxy refused CONNECT)
    ├── ConnectTimeout        nothing was sent
    ├── ReadTimeout           sent: no byte for read_timeout
    └── RemoteProtocolError   sent: bad or cut response
        └── StaleConnection   a reused connection closed before any response byte
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "HTTPError",
    "ReadTimeout",
    "RemoteProtocolError",
    "StaleConnection",
]


class HTTPError(Exception):
    """The request got no usable answer."""


class ConnectError(HTTPError):
    pass


class ConnectTimeout(HTTPError):
    pass


class ReadTimeout(HTTPError):
    pass


class RemoteProtocolError(HTTPError):
    pass


class StaleConnection(RemoteProtocolError):
    """A kept-alive connection was closed by the server before any byte of the answer:
    the server closed it idle as the request went out, so it never processed it."""
