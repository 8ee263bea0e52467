"""Refusals no agent owns, logged instead of traced, at a bounded rate.

A trace belongs to an agent, so a request the router cannot attribute (no token, an
unknown or revoked one) has nowhere to be recorded; it goes to `daemon.log` instead. Any
local process can send such requests as fast as it likes, so at most `per_minute` are
logged a minute; how many more were refused is logged with the first one of the next
minute. The token itself is never logged: a misconfigured agent may be sending a real
provider key as its token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("ironrt.router")

__all__ = ["StrayLog"]


class StrayLog:
    def __init__(self, per_minute: int = 20, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._window = clock()
        self._logged = 0
        self._dropped = 0

    def refused(self, status: int, code: str, target: str, why: str) -> None:
        """Log one refusal (`target` is "METHOD path", already made printable)."""
        now = self._clock()
        if now - self._window >= 60.0:
            if self._dropped:
                log.warning(
                    "router: %d more requests without a known agent were refused in the "
                    "last minute (not logged one by one)",
                    self._dropped,
                )
            self._window, self._logged, self._dropped = now, 0, 0
        if self._logged >= self.per_minute:
            self._dropped += 1
            return
        self._logged += 1
        log.warning(
            "router: refused %s with %d %s (%s); no known agent, so no trace",
            target,
            status,
            code,
            why,
        )
