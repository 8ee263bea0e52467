"""The budget ledger: every scope's limits and books, and exact admission of calls.

    call ──▶ Claim (bounds, from the budget policy) ──▶ Ledger.admit ──▶ Hold ──▶ Ledger.settle
                                                          │  fits now: admitted
                                                          │  fits once holds settle: waits (FIFO)
                                                          │  cannot fit even then: exhausted (402)

Plain memory and no I/O: the daemon persists what must survive (limits, window spend,
`resets_at`) through `ironrt.store.scopes`, the router commits each settled call.
"""

from ironrt.governance.ledger.ledger import Admission, Ledger, Outcome
from ironrt.governance.ledger.money import NANOS, fmt_usd, nanos_to_usd, usd_to_nanos
from ironrt.governance.ledger.scope import Claim, Hold, Scope, scope_key

__all__ = [
    "NANOS",
    "Admission",
    "Claim",
    "Hold",
    "Ledger",
    "Outcome",
    "Scope",
    "fmt_usd",
    "nanos_to_usd",
    "scope_key",
    "usd_to_nanos",
]
