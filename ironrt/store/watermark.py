"""A count that only goes up, and the tasks waiting for it to reach a value.

What the books and the router's outbox both keep: how far the work handed to them has
got (committed, published), so that a read can wait for everything handed over before it.
"""

from __future__ import annotations

import anyio


class Watermark:
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._waiting: list[tuple[int, anyio.Event]] = []

    @property
    def waited_for(self) -> bool:
        """Somebody waits for a value not reached yet."""
        return bool(self._waiting)

    def advance(self, to: int) -> None:
        """Raise the mark to `to` (never lower it) and wake whoever waited for it."""
        if to > self.value:
            self.value = to
        if self._waiting:
            waiting, self._waiting = self._waiting, []
            for target, reached in waiting:
                if target <= self.value:
                    reached.set()
                else:
                    self._waiting.append((target, reached))

    async def reach(self, target: int) -> None:
        """Wait until the mark is at `target` or above. A waiter cancelled meanwhile
        leaves only its entry behind, dropped when the mark passes it."""
        if self.value >= target:
            return
        reached = anyio.Event()
        self._waiting.append((target, reached))
        await reached.wait()
