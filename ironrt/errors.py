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
An answer whose code this client does not know (a newer daemon's), or whose body is not the
documented one, is still typed by its status where the status names one class (a 507 is a
StorageError, a 500 a DaemonError).

Beside the tree, the errors of setting up, before any request: each keeps the standard base
code catches it by (a bad setting is a ValueError), and none is an HTTP answer.

    ValueError
    ├── ConfigError          a setting ironrt cannot use (environment, config.toml); names it
    │   └── HomeNotPrivate   the home, or a file in it, belongs to another user
    ├── KeysFileError        keys.toml cannot be used (readable by others, malformed)
    ├── EnvFileError         an agent's --env-file cannot be read or parsed
    └── UnitError            a value that cannot be written into a systemd unit file
    RuntimeError
    ├── SchemaTooNew         the database was made by a newer ironrt
    └── DaemonAlreadyRunning another daemon holds this home
    AppsFileError            an apps file (ironrt.toml) cannot be used as it is
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
    "LedgerUnavailable",
    "LibraryModeError",
    "StartFailed",
    "StorageError",
    "WaitTimeout",
    "error_for",
]
# The setup errors (ConfigError, ...) are not in `__all__`, which lists the tree of control
# API errors: import them by name (`from ironrt.errors import ConfigError`).


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


class LedgerUnavailable(IronrtError):
    """The fleet ledger (`IRONRT_LEDGER_URL`, PostgreSQL) did not answer: a shared scope's
    limits were left as they were."""

    code = "ledger_unavailable"
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


class LibraryModeError(IronrtError):
    """Library mode cannot govern this process's calls: an SDK whose HTTP client it does
    not recognise (its calls would go out ungoverned), or an option only the daemon has."""


class WaitTimeout(IronrtError):
    code = "timeout"
    status = 408


_BY_CODE: dict[str, type[IronrtError]] = {
    cls.code: cls
    for cls in (
        DaemonUnavailable,
        LedgerUnavailable,
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


#: Statuses that only one class answers with: what an unknown code is, by its status.
_BY_STATUS: dict[int, type[IronrtError]] = {
    400: InvalidRequest,
    413: PayloadTooLarge,
    500: DaemonError,
    507: StorageError,
}


def error_for(
    code: str, message: str, field: str | None = None, *, status: int | None = None
) -> IronrtError:
    """The exception a client raises for an error body the daemon sent (`status`: the
    answer's HTTP status, for a code this client does not know)."""
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status or 0, IronrtError)
    return cls(message, field=field)


# ---- errors of setting up (not control API answers) -----------------------------------------
class ConfigError(ValueError):
    """A setting has a value ironrt cannot use; the message names the setting."""


class HomeNotPrivate(ConfigError):
    """The home, or a file in it, belongs to another user."""


class KeysFileError(ValueError):
    """keys.toml cannot be used: readable by others (its keys may have leaked), or not
    valid TOML of the expected shape."""


class EnvFileError(ValueError):
    """An env file that cannot be used: missing, unreadable, not a regular file, too big,
    or with a line that is no variable."""


class UnitError(ValueError):
    """A value that cannot be written into a unit file."""


class SchemaTooNew(RuntimeError):
    """The database was made by a newer ironrt: refused rather than guessed at."""


class JournalReplayFailed(RuntimeError):
    """The books' journal holds writes the database cannot take: the daemon does not start
    (it would lose answered calls' costs), and the journal is kept for the next start."""


class DaemonAlreadyRunning(RuntimeError):
    """Another daemon holds this home's lock."""


class AppsFileError(Exception):
    """The file cannot be used as it is. One line names the file, the entry and the key;
    the command exits 2 having started or stopped nothing."""
