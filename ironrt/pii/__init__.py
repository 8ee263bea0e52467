"""PII detection and redaction for the router's safety policy.

`find_pii(text)` returns typed, validated findings; `Placeholders` swaps them for
`[EMAIL_1]`-style placeholders and back for one call; `StreamScanner`, `StreamRedactor` and
`StreamRestorer` do the same for text that arrives in pieces; `PieceScan` and `steps.py`
check one large text in short steps, so the event loop can run between them. Pure
functions over strings (`steps.Turns` only awaits between steps): no I/O, no global state
beyond compiled patterns and a validation cache.
"""

from ironrt.pii.detectors import find_pii, scan
from ironrt.pii.finding import PII_TYPES, Finding, PiiType
from ironrt.pii.redact import PLACEHOLDER, Placeholders
from ironrt.pii.stream import StreamRedactor, StreamRestorer, StreamScanner

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
