"""The two things a provider entry names by a word: its auth scheme and its error shape.

- Auth: the agent's IC_TOKEN arrives where its SDK puts a key, and the real key leaves
  where the provider wants it. `bearer` (OpenAI and most compatible APIs) reads
  `Authorization: Bearer`, then Azure-style `api-key`; `x-api-key` (Anthropic) reads
  `x-api-key`, then `Authorization: Bearer` (the SDK's `auth_token`). A key from a variable
  the entry lists in `bearer_key_env` (`ANTHROPIC_AUTH_TOKEN`) goes up as a bearer token.
- Errors: OpenAI's `{"error": {"message", "type", "param", "code"}}` (a mid-stream error
  is a `data: {"error": ...}` event, on which the SDK raises `openai.APIError`);
  Anthropic's `{"type": "error", "error": {"type", "message"}}` with a type fixed by the
  HTTP status (a mid-stream error is an `event: error` event with the same body).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from ironrt.settings_table import ProviderEntry

__all__ = [
    "ERROR_TYPES",
    "error_body",
    "error_type_for_status",
    "stream_error_event",
    "token_from_headers",
    "upstream_auth_headers",
]

_ENCODE = msgspec.json.encode

#: Anthropic: HTTP status -> error type, from the API's error documentation.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_KNOWN_TYPES = frozenset(ERROR_TYPES.values())


def error_type_for_status(status: int) -> str:
    """The documented error type for a status: other 4xx are invalid requests, 5xx API errors."""
    known = ERROR_TYPES.get(status)
    if known:
        return known
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(
    entry: ProviderEntry,
    status: int,
    message: str,
    type: str,
    code: str | None,
    param: str | None = None,
) -> bytes:
    """A JSON error body in the entry's shape (Anthropic's: a `type` it does not know is
    replaced by the status's)."""
    if entry.error_shape == "anthropic":
        kind = type if type in _KNOWN_TYPES else error_type_for_status(status)
        return _ENCODE({"type": "error", "error": {"type": kind, "message": message}})
    return _ENCODE({"error": {"message": message, "type": type, "param": param, "code": code}})


def stream_error_event(
    entry: ProviderEntry, message: str, type: str, code: str | None = None
) -> bytes:
    """An SSE event that makes the SDK raise: the stream failed after it started."""
    if entry.error_shape == "anthropic":
        kind = type if type in _KNOWN_TYPES else "api_error"
        body = _ENCODE({"type": "error", "error": {"type": kind, "message": message}})
        return b"event: error\ndata: " + body + b"\n\n"
    error = {"message": message, "type": type, "param": None, "code": code}
    return b"data: " + _ENCODE({"error": error}) + b"\n\n"


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _bearer(headers: Mapping[str, str]) -> str | None:
    auth = _get(headers, "authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def _plain(headers: Mapping[str, str], name: str) -> str | None:
    value = _get(headers, name)
    return value.strip() if value and value.strip() else None


def token_from_headers(entry: ProviderEntry, headers: Mapping[str, str]) -> str | None:
    """The credential the agent sent (its IC_TOKEN), where the entry's SDK puts it."""
    if entry.auth == "x-api-key":
        return _plain(headers, "x-api-key") or _bearer(headers)
    return _bearer(headers) or _plain(headers, "api-key")


def upstream_auth_headers(
    entry: ProviderEntry, key: str, key_env: str | None = None
) -> dict[str, str]:
    """Headers carrying the real key; `key_env` is the variable it came from."""
    if entry.auth == "bearer" or key_env in entry.bearer_key_env:
        return {"authorization": f"Bearer {key}"}
    return {"x-api-key": key}
