"""`ironrt.protect` and `ironrt.protect_agent`: governance in-process, without a daemon.

    with ironrt.protect(budget=0.50, name="notebook", pii="redact", rpm=60):
        openai.OpenAI().chat.completions.create(...)

    @ironrt.protect_agent(budget=50.0)
    def my_agent(prompt: str) -> str: ...

A scope is an agent record of kind "library" in `$IRONRT_HOME`'s database, named after
the scope, running while the scope is open and ended when it closes; its budget is the
scope's (for the decorator: each call's). Scopes live in a context variable, so nested
scopes, threads and tasks each see their own; a call made inside nested scopes belongs to
the innermost one.

What library mode does NOT do, and only the daemon can: keep the provider key away from
the code (the process holds its own key here), and control the process (stop, restart,
pause on budget, resource limits). `on_budget` is therefore "block" only.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any, TypeVar, cast

from ironrt.governance.agent import AgentGovernance
from ironrt.library.hooks import CURRENT_SCOPE, check_sdks, install
from ironrt.library.kernel import kernel
from ironrt.protocol import PiiMode
from ironrt.values import check_agent_name, check_count, check_usd

F = TypeVar("F", bound=Callable[..., Any])

_PII_MODES = ("off", "detect", "redact", "block")


class protect:
    """Govern the SDK calls made inside: budget, PII, rate limits, breaker, retries."""

    def __init__(
        self,
        budget: float | None = None,
        *,
        name: str = "library",
        pii: PiiMode = "detect",
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> None:
        if pii not in _PII_MODES:
            raise ValueError(f"pii must be one of {', '.join(_PII_MODES)}, not {pii!r}")
        if budget is not None:
            check_usd("budget", budget)
        check_agent_name(name)
        for field, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None:
                check_count(field, value)
        self.budget, self.name, self.pii, self.rpm, self.tpm = budget, name, pii, rpm, tpm
        self.gov: AgentGovernance | None = None
        self._tokens: list[Any] = []

    @property
    def agent_id(self) -> str | None:
        """The scope's agent id (`ironrt ps --all`, `ironrt usage`), once entered."""
        return self.gov.agent_id if self.gov is not None else None

    @property
    def spent_usd(self) -> float:
        return self.gov.spent_usd if self.gov is not None else 0.0

    def __enter__(self) -> protect:
        install()
        check_sdks()
        k = kernel()
        gov = k.portal.call(
            k.open_scope, self.name, self.budget, self.pii, self.rpm, self.tpm, "block"
        )
        self.gov = gov
        self._tokens.append(CURRENT_SCOPE.set(gov))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        CURRENT_SCOPE.reset(self._tokens.pop())
        assert self.gov is not None
        error = None if exc is None else f"{type(exc).__name__}: {exc}"[:500]
        k = kernel()
        k.portal.call(k.close_scope, self.gov, error)

    async def __aenter__(self) -> protect:
        return self.__enter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.__exit__(kind, exc, tb)


def protect_agent(
    budget: float | None = None,
    *,
    name: str | None = None,
    pii: PiiMode = "detect",
    rpm: int | None = None,
    tpm: int | None = None,
) -> Callable[[F], F]:
    """Iron Cage's decorator: each call of the function runs in its own `protect` scope,
    named after the function's qualified name unless `name` says otherwise."""

    def decorate(fn: F) -> F:
        scope_name = name or fn.__qualname__.replace("<locals>.", "")[:128]

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with protect(budget, name=scope_name, pii=pii, rpm=rpm, tpm=tpm):
                    return await fn(*args, **kwargs)

            return cast(F, run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with protect(budget, name=scope_name, pii=pii, rpm=rpm, tpm=tpm):
                return fn(*args, **kwargs)

        return cast(F, run)

    return decorate
