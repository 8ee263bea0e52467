"""PII detection and redaction for the router's safety policy.

`find_pii(text)` returns typed, validated findings; `Placeholders` swaps them for
`[EMAIL_1]`-style placeholders and back for one call; `StreamScanner`, `StreamRedactor` and
`StreamRestorer` do the same for text that arrives in pieces; `PieceScan` and `steps.py`
check one large text in short steps, so the event loop can run between them. Pure
functions over strings (`steps.Turns` only awaits between steps): no I/O, no global state
beyond compiled patterns and a validation cache.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ironrt.pii.detectors import find_pii, scan
    from ironrt.pii.finding import PII_TYPES, Finding, PiiType
    from ironrt.pii.redact import PLACEHOLDER, Placeholders
    from ironrt.pii.stream import StreamRedactor, StreamRestorer, StreamScanner

#: Each public name and its module, imported on first use: `ironrt.pii.entities` (the
#: supervisor checks custom entities) must not bring the detectors, whose patterns are
#: compiled at import (the daemon loads them after its start: see `warm.py`).
_LAZY = {
    "find_pii": "detectors",
    "scan": "detectors",
    "PII_TYPES": "finding",
    "Finding": "finding",
    "PiiType": "finding",
    "PLACEHOLDER": "redact",
    "Placeholders": "redact",
    "StreamRedactor": "stream",
    "StreamRestorer": "stream",
    "StreamScanner": "stream",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "PII_TYPES",
    "PLACEHOLDER",
    "Finding",
    "PiiType",
    "Placeholders",
    "StreamRedactor",
    "StreamRestorer",
    "StreamScanner",
    "find_pii",
    "scan",
]
