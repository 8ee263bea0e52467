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
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

log = logging.getLogger("ironrt.daemon")


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
    not garbage, and nothing frozen is ever scanned again)."""
    gc.collect()
    gc.freeze()
    log.info("heap frozen", extra={"fields": {"objects": gc.get_freeze_count()}})
