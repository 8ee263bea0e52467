"""`ironrt.protect` and `ironrt.protect_agent`: governance in-process, without a daemon.

    with ironrt.protect(budget=0.50, name="notebook", pii="redact", rpm=60):
        openai.OpenAI().chat.completions.create(...)

    with ironrt.protect(pii="redact", pii_types="email,secret=block"):  # these types only
        ...

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

import asyncio
import contextvars
import functools
import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from ironrt.governance.agent import AgentGovernance
from ironrt.library.hooks import CURRENT_SCOPE, check_sdks, install
from ironrt.library.kernel import LibraryKernel, kernel, started
from ironrt.protocol import OnBudget, PiiMode
from ironrt.values import (
    BUILTIN_PII_TYPES,
    check_agent_name,
    check_count,
    check_usd,
    parse_pii_types,
)

F = TypeVar("F", bound=Callable[..., Any])

_PII_MODES = ("off", "detect", "redact", "block")


#: A type selection: `"email,secret=block"`, `["email", "phone"]` or `{"email": "redact"}`.
PiiTypes = str | Sequence[str] | Mapping[str, str]


def _check(
    budget: Any, name: Any, pii: Any, rpm: Any, tpm: Any, pii_types: Any = None
) -> dict[str, PiiMode] | None:
    """Refuse bad arguments where they are written (`protect(...)`, `@protect_agent(...)`),
    not at the first call: a string budget or a fractional rate would otherwise reach the
    ledger. Returns the type selection as the API's map."""
    if pii not in _PII_MODES:
        raise ValueError(f"pii must be one of {', '.join(_PII_MODES)}, not {pii!r}")
    types = _pii_types(pii_types, pii)
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, (int, float)):
            raise ValueError(f"`budget` must be a number of USD, not {budget!r}")
        check_usd("budget", budget)
    if not isinstance(name, str):
        raise ValueError(f"`name` must be a string, not {name!r}")
    check_agent_name(name)
    for field, value in (("rpm", rpm), ("tpm", tpm)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"`{field}` must be a whole number, not {value!r}")
        check_count(field, value)
    return types


def _pii_types(spec: Any, pii: str) -> dict[str, PiiMode] | None:
    """`pii_types` as the API's map: names without an action get `pii`, and every type
    not named is then off (`ironrt.values.parse_pii_types`). A name that is neither a
    built-in type nor an entity of the home's `pii.toml` is refused here, as the daemon
    refuses it, with the closest type as a hint."""
    if spec is None:
        return None
    ok = isinstance(spec, (str, Mapping)) or (
        isinstance(spec, (list, tuple)) and all(isinstance(i, str) for i in spec)
    )
    if not ok or (isinstance(spec, Mapping) and not all(isinstance(k, str) for k in spec)):
        raise ValueError(
            "`pii_types` must be a string, a list of strings or a mapping of type names to "
            f"actions, not {spec!r}"
        )
    types: dict[str, PiiMode] = parse_pii_types(
        spec if isinstance(spec, (str, Mapping)) else list(spec), pii
    )
    unknown = [t for t in types if t != "*" and t not in BUILTIN_PII_TYPES]
    if unknown:  # perhaps a custom entity: the home's pii.toml says
        from ironrt.config import Settings
        from ironrt.policies.pii_rules import rules_files

        rules_files(Settings.load()).check_types(types, None)
    return types


class protect:
    """Govern the SDK calls made inside: budget, PII, rate limits, breaker, retries."""

    def __init__(
        self,
        budget: float | None = None,
        *,
        name: str = "library",
        pii: PiiMode = "detect",
        pii_types: PiiTypes | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> None:
        self.pii_types = _check(budget, name, pii, rpm, tpm, pii_types)
        self.budget, self.name, self.pii, self.rpm, self.tpm = budget, name, pii, rpm, tpm
        self.gov: AgentGovernance | None = None
        #: One (context token, agent) per entry not yet left, innermost last.
        self._open: list[tuple[contextvars.Token[AgentGovernance | None], AgentGovernance]] = []

    @property
    def agent_id(self) -> str | None:
        """The scope's agent id (`ironrt ps --all`, `ironrt usage`), once entered."""
        return self.gov.agent_id if self.gov is not None else None

    @property
    def spent_usd(self) -> float:
        return self.gov.spent_usd if self.gov is not None else 0.0

    def __enter__(self) -> protect:
        k = self._kernel()
        gov = k.portal.call(k.open_scope, *self._opening())
        return self._entered(gov)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        gov, error = self._leaving(exc)
        k = kernel()
        k.portal.call(k.close_scope, gov, error)

    async def __aenter__(self) -> protect:
        """As `__enter__`, without blocking the caller's event loop while the record is
        written (or the kernel starts): the loop's other tasks, and the sends of their
        governed calls, which run on it, go on meanwhile."""
        k = self._kernel() if started() else await asyncio.to_thread(self._kernel)
        gov = await asyncio.wrap_future(k.portal.start_task_soon(k.open_scope, *self._opening()))
        return self._entered(gov)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        gov, error = self._leaving(exc)
        k = kernel()
        closing = asyncio.wrap_future(k.portal.start_task_soon(k.close_scope, gov, error))
        await asyncio.shield(closing)  # a task cancelled while leaving still ends its record

    # ---- the halves both ways share -----------------------------------------------------

    @staticmethod
    def _kernel() -> LibraryKernel:
        install()
        check_sdks()
        return kernel()

    def _opening(
        self,
    ) -> tuple[
        str, float | None, PiiMode, int | None, int | None, OnBudget, dict[str, PiiMode] | None
    ]:
        return self.name, self.budget, self.pii, self.rpm, self.tpm, "block", self.pii_types

    def _entered(self, gov: AgentGovernance) -> protect:
        self.gov = gov
        self._open.append((CURRENT_SCOPE.set(gov), gov))
        return self

    def _leaving(self, exc: BaseException | None) -> tuple[AgentGovernance, str | None]:
        """Leave the innermost entry of this scope; the calls made from here on are the
        enclosing scope's again (or ungoverned)."""
        token, gov = self._open.pop()
        CURRENT_SCOPE.reset(token)
        # The entry still open, if this object was entered twice; else the one left, so
        # `spent_usd` stays readable after the scope ended.
        self.gov = self._open[-1][1] if self._open else gov
        return gov, None if exc is None else f"{type(exc).__name__}: {exc}"[:500]


def protect_agent(
    budget: float | None = None,
    *,
    name: str | None = None,
    pii: PiiMode = "detect",
    pii_types: PiiTypes | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
) -> Callable[[F], F]:
    """Iron Cage's decorator: each call of the function runs in its own `protect` scope,
    named after the function's qualified name unless `name` says otherwise."""
    types = _check(budget, "function" if name is None else name, pii, rpm, tpm, pii_types)

    def decorate(fn: F) -> F:
        scope_name = name if name is not None else fn.__qualname__.replace("<locals>.", "")[:128]
        check_agent_name(scope_name)  # a function called `all`, say

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with protect(
                    budget, name=scope_name, pii=pii, pii_types=types, rpm=rpm, tpm=tpm
                ):
                    return await fn(*args, **kwargs)

            return cast(F, run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with protect(budget, name=scope_name, pii=pii, pii_types=types, rpm=rpm, tpm=tpm):
                return fn(*args, **kwargs)

        return cast(F, run)

    return decorate
