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
    from ironrt.aclient import AsyncRuntime
    from ironrt.client import Runtime
    from ironrt.library import LibraryModeError, protect, protect_agent

#: Attributes imported on first use, and the module each comes from.
_LAZY = {
    "Runtime": "ironrt.client",
    "AsyncRuntime": "ironrt.aclient",
    "LibraryModeError": "ironrt.library",
    "protect": "ironrt.library",
    "protect_agent": "ironrt.library",
}


def __getattr__(name: str) -> Any:
    """The clients and library mode are imported on first use. `import ironrt.daemon`
    imports this package first: the daemon must not pay for the clients it never uses
    (~30 ms and the client-side modules), nor `import ironrt` (the CLI) for the router
    and the policies library mode brings."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ironrt' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


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
