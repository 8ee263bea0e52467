"""One budget scope, one call's claim on the scopes it belongs to, and the hold it gets.

A scope is `global`, `project:NAME` or `agent:ID`. Every metered call belongs to its
agent's scope, its project's (if any) and `global`, and must fit all of them: its hold is
taken in each, atomically (the ledger is single-threaded on the event loop), and settled
in each.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ironrt.governance.ledger.lease import Lease
from ironrt.governance.ledger.money import nanos_to_usd, usd_to_nanos
from ironrt.protocol import PiiMode, ScopeLimits
from ironrt.values import parse_duration

#: Budget warnings, in percent of the budget; 100 is `BudgetExhausted`.
WARN_AT = (50, 80, 95, 100)

#: (input tokens, output tokens of all choices) -> nano-dollars, an upper bound.
PriceFn = Callable[[int, int], int]


def scope_key(kind: str, name: str = "") -> str:
    return "global" if kind == "global" else f"{kind}:{name}"


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    stamp = dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@functools.lru_cache(maxsize=1024)
def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(glob))


#: What `Scope.apply` may change.
_LIMITS_STATE = (
    "budget_nanos",
    "window",
    "resets_at",
    "rpm",
    "tpm",
    "max_concurrent",
    "models",
    "pii",
    "pii_types",
    "warned",
    "exhausted",
)


@dataclass(slots=True, eq=False)
class Scope:
    key: str
    #: How its owner raises the budget, if not the CLI's way (library mode's scopes).
    raise_hint: str | None = None
    budget_nanos: int | None = None
    window: str | None = None
    resets_at: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    models: tuple[str, ...] | None = None
    #: PII handling every call in the scope gets at least (None: no floor), per type as
    #: an agent's (`ironrt.values.pii_action`).
    pii: PiiMode | None = None
    pii_types: dict[str, PiiMode] | None = None
    #: Settled spend of the current window (of all time without a window).
    spent_nanos: int = 0
    #: Upper bounds reserved by calls in flight.
    held_nanos: int = 0
    in_flight: int = 0
    #: Calls queued for admission (parked `pause` calls not counted).
    waiting: int = 0
    warned: set[int] = field(default_factory=set)
    #: BudgetExhausted was announced in this window (announce once, not per refused call).
    exhausted: bool = False
    #: Per-policy state that lives with the scope (rate-limit buckets).
    state: dict[str, Any] = field(default_factory=dict)
    #: A shared scope's lease (`IRONRT_LEDGER_URL`): then `spent_nanos` is the fleet's
    #: settled spend as last known plus this daemon's own since, and calls are admitted
    #: against the lease (`ironrt.governance.ledger.lease`).
    lease: Lease | None = None

    # ---- limits ---------------------------------------------------------------------
    @property
    def agent_id(self) -> str | None:
        """The agent of an `agent:ID` scope (None for `global` and projects)."""
        return self.key[6:] if self.key.startswith("agent:") else None

    @property
    def budget_usd(self) -> float | None:
        return None if self.budget_nanos is None else nanos_to_usd(self.budget_nanos)

    @property
    def spent_usd(self) -> float:
        return nanos_to_usd(self.spent_nanos)

    @property
    def held_usd(self) -> float:
        return nanos_to_usd(self.held_nanos)

    @property
    def window_s(self) -> int | None:
        return None if self.window is None else parse_duration(self.window)

    @property
    def limited(self) -> bool:
        """Anything to check at admission (a budget or a concurrency cap)."""
        return self.budget_nanos is not None or self.max_concurrent is not None

    def allows(self, model: str) -> bool:
        return self.models is None or any(_pattern(p).match(model) for p in self.models)

    def apply(self, changes: dict[str, Any], now: float) -> None:
        """Set (or, with None, clear) limits. A window starts when it is set, keeping the
        spend so far; a new budget re-arms the warnings it is no longer past."""
        for name, value in changes.items():
            if name == "budget_usd":
                self.budget_nanos = None if value is None else usd_to_nanos(value)
                self.exhausted = False
                self.rearm()
            elif name == "window":
                self.window = value
                self.resets_at = None if value is None else now + parse_duration(value)
            elif name == "models":
                self.models = None if value is None else tuple(value)
            elif name in ("rpm", "tpm", "max_concurrent", "pii"):
                setattr(self, name, value)
            elif name == "pii_types":
                self.pii_types = None if value is None else dict(value)
            else:
                raise KeyError(name)

    def limits_state(self) -> tuple[Any, ...]:
        """Everything `apply` may change, to put back if the change cannot be saved."""
        return tuple(
            set(getattr(self, name)) if name == "warned" else getattr(self, name)
            for name in _LIMITS_STATE
        )

    def restore_limits(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(_LIMITS_STATE, state, strict=True):
            setattr(self, name, value)

    def rearm(self) -> None:
        budget = self.budget_nanos
        self.warned = {t for t in self.warned if budget and self.spent_nanos * 100 >= t * budget}

    def roll(self, now: float) -> bool:
        """Start the next window if this one is over: spend back to 0, warnings re-armed.

        Fixed windows: `resets_at` moves on by whole windows, so a daemon that was down
        through several resets lands on the same schedule as one that never stopped.
        """
        if self.resets_at is None or now < self.resets_at:
            return False
        step = self.window_s or 1
        missed = int((now - self.resets_at) // step) + 1
        self.resets_at += missed * step
        self.spent_nanos = 0
        if self.lease is not None:
            self.lease.new_window()
        self.warned = set()
        self.exhausted = False
        return True

    def crossed(self) -> list[int]:
        """Warning thresholds newly reached by the current spend (each fires once a window)."""
        budget = self.budget_nanos
        if budget is None:
            return []
        out: list[int] = []
        spent, warned = self.spent_nanos * 100, self.warned
        for threshold in WARN_AT:  # ascending: the first not reached ends the look
            if budget and spent < threshold * budget:
                break
            if threshold not in warned:
                warned.add(threshold)
                out.append(threshold)
        return out

    def describe(self) -> dict[str, Any]:
        """What events say about the scope: enough digits to be true."""
        return {
            "scope": self.key,
            "spent_usd": round(self.spent_usd, 9),
            "held_usd": round(self.held_usd, 9),
            "budget_usd": self.budget_usd,
            "resets_at": iso(self.resets_at),
        }

    def info(self) -> ScopeLimits:
        lease = self.lease
        fleet: dict[str, Any] = {}
        if lease is not None:
            fleet = {
                "shared": True,
                "own_spent_usd": round(nanos_to_usd(lease.own_nanos), 9),
                "leased_usd": round(nanos_to_usd(max(lease.granted_nanos - lease.own_nanos, 0)), 9),
                "lease_expires_at": iso(lease.expires_at),
                "others_held_usd": round(nanos_to_usd(lease.others_held_nanos), 9),
                "daemons": lease.daemons,
                "ledger": "ok" if lease.available else "unavailable",
            }
        return ScopeLimits(
            scope=self.key,
            budget_usd=self.budget_usd,
            spent_usd=round(self.spent_usd, 9),
            held_usd=round(self.held_usd, 9),
            window=self.window,
            resets_at=iso(self.resets_at),
            rpm=self.rpm,
            tpm=self.tpm,
            max_concurrent=self.max_concurrent,
            models=list(self.models) if self.models is not None else None,
            in_flight=self.in_flight,
            waiting=self.waiting,
            pii=self.pii,
            pii_types=dict(self.pii_types) if self.pii_types is not None else None,
            **fleet,
        )


@dataclass(slots=True, eq=False)
class Claim:
    """What one call asks of the ledger: its token bounds and how to price them.

    `output_tokens` is the bound per choice (the request's max tokens, else the model's
    maximum output); `min_output` the least output clamping may leave (0 for calls that
    produce none). `countable` says an exact input count can be asked of the provider
    while `input_tokens` is still the byte-based bound (`exact` False).
    """

    agent_id: str
    scopes: tuple[Scope, ...]
    price: PriceFn
    input_tokens: int
    output_tokens: int
    choices: int = 1
    min_output: int = 0
    exact: bool = False
    countable: bool = False
    #: `--on-budget pause`: on exhaustion wait (unanswered) instead of refusing.
    park: bool = False
    #: Place in the FIFO queue; kept when the call re-enters after an exact count.
    seq: int = -1

    def cost(self, output_per_choice: int) -> int:
        return self.price(self.input_tokens, output_per_choice * self.choices)

    def affordable(self, room: int) -> int:
        """The largest output per choice whose bound fits `room` nano-dollars."""
        lo, hi = self.min_output, self.output_tokens
        if self.cost(lo) > room:
            return -1
        while lo < hi:  # the price is monotone in the output: bisect
            mid = (lo + hi + 1) // 2
            if self.cost(mid) <= room:
                lo = mid
            else:
                hi = mid - 1
        return lo


@dataclass(slots=True, eq=False)
class Hold:
    """A call's reservation, held in each of its scopes until it settles (exactly once)."""

    scopes: tuple[Scope, ...]
    nanos: int
    #: The output per choice the call was clamped to, when it did not fit whole.
    clamped_to: int | None = None
    settled: bool = False
    #: Whose call holds it (the budget announcements its settle queues name the agent).
    agent_id: str | None = None
