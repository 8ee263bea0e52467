"""ironrt: run AI agents under control.

from ironrt import Runtime
rt = Runtime(budget=50.0)
agent_id = rt.start_agent("agents/hello.py")
"""

from ironrt._version import __version__
from ironrt.aclient import AsyncRuntime
from ironrt.client import Runtime
from ironrt.errors import (
    AgentNotFound,
    AmbiguousAgent,
    Conflict,
    DaemonError,
    DaemonUnavailable,
    InvalidRequest,
    IronrtError,
    StartFailed,
    StorageError,
    WaitTimeout,
)

__all__ = [
    "AgentNotFound",
    "AmbiguousAgent",
    "AsyncRuntime",
    "Conflict",
    "DaemonError",
    "DaemonUnavailable",
    "InvalidRequest",
    "IronrtError",
    "Runtime",
    "StartFailed",
    "StorageError",
    "WaitTimeout",
    "__version__",
]
