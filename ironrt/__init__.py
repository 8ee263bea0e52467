"""ironrt: run AI agents under control.

from ironrt import Runtime
rt = Runtime(budget=50.0)
agent_id = rt.start_agent("agents/hello.py")

Or in-process, without a daemon (library mode):

with ironrt.protect(budget=0.50, name="notebook", pii="redact"):
    openai.OpenAI().chat.completions.create(...)
"""

from typing import TYPE_CHECKING, Any

from ironrt._version import __version__
from ironrt.aclient import AsyncRuntime
from ironrt.client import Runtime
from ironrt.errors import (
    AgentNotFound,
    AmbiguousAgent,
    ConfigError,
    Conflict,
    DaemonError,
    DaemonUnavailable,
    InvalidRequest,
    IronrtError,
    StartFailed,
    StorageError,
    WaitTimeout,
)

if TYPE_CHECKING:
    from ironrt.library import LibraryModeError, protect, protect_agent

_LIBRARY = frozenset({"LibraryModeError", "protect", "protect_agent"})


def __getattr__(name: str) -> Any:
    """Library mode is imported on first use: `import ironrt` (the CLI, the clients)
    does not pay for the router and the policies it brings."""
    if name in _LIBRARY:
        import ironrt.library

        return getattr(ironrt.library, name)
    raise AttributeError(f"module 'ironrt' has no attribute {name!r}")


__all__ = [
    "AgentNotFound",
    "AmbiguousAgent",
    "AsyncRuntime",
    "ConfigError",
    "Conflict",
    "DaemonError",
    "DaemonUnavailable",
    "InvalidRequest",
    "IronrtError",
    "LibraryModeError",
    "Runtime",
    "StartFailed",
    "StorageError",
    "WaitTimeout",
    "__version__",
    "protect",
    "protect_agent",
]
