"""One SDK request on its way through the kernel: what the hook knows about it.

The hook (hooks.py) runs in the caller's context (its thread, its event loop); the kernel
runs on its own loop (kernel.py). A `SdkCall` carries what the kernel's transport needs to
send the call where the SDK's client itself was going: the client, its original `send`,
the caller's loop for async clients, and the URL prefix the client targets.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ironrt.governance.agent import AgentGovernance


@dataclass(slots=True)
class SdkCall:
    #: The governed scope's agent.
    gov: AgentGovernance
    #: The httpx or httpx2 client the SDK sends through, and that class's original `send`.
    client: Any
    send: Callable[..., Any]
    #: The request as the SDK built it (its class builds the one that goes out).
    request: Any
    #: `scheme://host[:port]` plus any path before `/v1`: where the client was going.
    base: str
    #: The rest of `send`'s keyword arguments (auth, follow_redirects).
    options: dict[str, Any]
    #: The caller's event loop, for an async client (None: a sync client).
    loop: asyncio.AbstractEventLoop | None = None
    #: A sync client's thread, while it waits for the answer's head: it runs the sends the
    #: kernel puts here (a thread the caller already has, instead of a worker's hop).
    jobs: queue.SimpleQueue[Callable[[], None] | None] | None = None


#: The call the kernel's task is serving (set in that task's context only).
CURRENT_CALL: contextvars.ContextVar[SdkCall | None] = contextvars.ContextVar(
    "ironrt_library_call", default=None
)
