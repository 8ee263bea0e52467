"""The errors of ironrt, shared by the daemon (which answers with them), the client (which
raises them) and the CLI (which renders them as one line).

    IronrtError
    ├── DaemonUnavailable    no daemon answers on the socket (and autostart was off or failed)
    ├── DaemonError          the daemon failed internally (HTTP 500)
    ├── StorageError         the daemon cannot write its state: disk full (507); nothing changed
    ├── InvalidRequest       bad input: malformed JSON, wrong type, unknown field (400/413/422)
    ├── AgentNotFound        no agent matches the id, prefix or name (404)
    ├── AmbiguousAgent       a prefix matches several agents (409)
    ├── Conflict             the request clashes with state: name in use, agent not running (409)
    ├── StartFailed          the agent could not be started: missing script, not executable (422)
    └── WaitTimeout          `wait`/`stop` gave up before the agent ended

Each class carries the stable `code` of the control API's error body and its HTTP status, so
one table maps both ways: `error_for(code, message)` rebuilds the exception on the client.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AgentNotFound",
    "AmbiguousAgent",
    "Conflict",
    "DaemonError",
    "DaemonUnavailable",
    "InvalidRequest",
    "IronrtError",
    "StartFailed",
    "StorageError",
    "WaitTimeout",
    "error_for",
]


class IronrtError(Exception):
    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class DaemonUnavailable(IronrtError):
    code = "daemon_unavailable"
    status = 503


class DaemonError(IronrtError):
    code = "internal"
    status = 500


class StorageError(IronrtError):
    code = "storage_error"
    status = 507


class InvalidRequest(IronrtError):
    code = "invalid_request"
    status = 400


class InvalidValue(InvalidRequest):
    """A value of the right type that is out of its range or not allowed (a budget of -1,
    an rpm of 2**63): 422, with the same code, so clients handle both alike."""

    status = 422


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"
    status = 413


class AgentNotFound(IronrtError):
    code = "agent_not_found"
    status = 404


class AmbiguousAgent(IronrtError):
    code = "ambiguous_agent"
    status = 409


class Conflict(IronrtError):
    code = "conflict"
    status = 409


class StartFailed(IronrtError):
    code = "start_failed"
    status = 422


class WaitTimeout(IronrtError):
    code = "timeout"
    status = 408


_BY_CODE: dict[str, type[IronrtError]] = {
    cls.code: cls
    for cls in (
        DaemonUnavailable,
        DaemonError,
        StorageError,
        InvalidRequest,
        PayloadTooLarge,
        AgentNotFound,
        AmbiguousAgent,
        Conflict,
        StartFailed,
        WaitTimeout,
    )
}


def error_for(code: str, message: str, field: str | None = None) -> IronrtError:
    """The exception a client raises for an error body the daemon sent."""
    cls = _BY_CODE.get(code, IronrtError)
    return cls(message, field=field)
