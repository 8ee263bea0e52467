"""The daemon's long-lived heap kept out of the garbage collector's full passes.

The daemon's heap is mostly what it loads once and keeps: modules, the price tables
genai-prices loads at the first priced call (tens of thousands of objects), the PII
detectors' patterns. A full collection scans all of it, and one ran every few seconds
under load (26 ms each on the bench machine, 2,200 calls/s): a pause on whichever calls
were in flight, the tail of the latency figures. After the first settled call, when those
tables are loaded, the daemon collects once and freezes what survived (`gc.freeze`):
later collections scan only what came after. Only the daemon does this: library mode
runs in the agent's own process, whose heap is not ours to freeze.

The price: an object alive at that moment that later becomes part of a garbage cycle is
never freed (what was alive then is the daemon's start: its modules, tables and the
agents it adopted; bounded, and mostly kept anyway).

At the same moment the young generation's threshold goes from CPython's 700 to
`YOUNG_THRESHOLD`. The count it is held against is the tracked objects made minus those
freed, and a call frees what it makes (no garbage cycles on its path); but the calls in
flight and the writes waiting for their group commit (25 ms) hold a few hundred at a
time, so at 700 the collector ran every ~70 calls at concurrency 32 (183 collections in
8 s, ~1.6 % of the daemon's CPU, 0.1-0.3 ms pauses on the calls in flight) and found
nothing. At 10,000 it ran not once in the same 8 s; garbage cycles (an error path's
traceback, say) are still collected, after at most 10,000 objects instead of 700.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

log = logging.getLogger("ironrt.daemon")

#: The young generation's collection threshold once the heap is frozen (CPython: 700).
YOUNG_THRESHOLD = 10_000


class FreezeAfterFirstCall:
    """A call observer (`RouterService.observers`) that freezes the heap once, off the
    call's path (at the loop's next turn, after the answer went out)."""

    def __init__(self) -> None:
        self.done = False

    def observe(self, trace: Any, flow: Any) -> None:
        if not self.done:
            self.done = True
            asyncio.get_running_loop().call_soon(freeze)


def freeze() -> None:
    """Collect what is garbage now, then move every survivor to the permanent
    generation (its objects stay alive as they would have: nothing is freed that was
    not garbage, and nothing frozen is ever scanned again), and raise the young
    generation's threshold."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    fields = {"objects": gc.get_freeze_count(), "young_threshold": YOUNG_THRESHOLD}
    log.info("heap frozen", extra={"fields": fields})
