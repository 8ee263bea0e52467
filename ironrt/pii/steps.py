"""Large texts checked in short steps, and the steps run between turns of the event loop.

The router's PII policy scans large prompts and completions without holding the event loop
(`ironrt/policies/pii.py`). A check is a generator (`Steps`) that does one step of work
per `next()`; `drain` runs one at once (the inline path) and `Turns` runs them in turns of
`TURN_S`, giving the loop back in between.

Steps should be short, and few, since every step pays a fixed cost (the scanner's held
tail is read again, a few dict lookups). A fixed piece size cannot do both: prose without
digits or `@` scans at ~10 ns a character, dense PII at 0.2-0.6 µs, crafted input (runs of
IPv6-like groups) at ~5 µs. `Pace` therefore measures each step and sizes the next one to
take about `STEP_S`, between `PIECE_MIN` and `PIECE_MAX` characters. Where a step ends
never changes what is found (`PieceScan`), so the sizing is free to follow the clock.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Generator, Iterator
from typing import TypeVar

import anyio
import anyio.lowlevel

from ironrt.pii.detectors import find_pii
from ironrt.pii.finding import Finding, new_finding
from ironrt.pii.pieces import PieceScan
from ironrt.pii.recall import RECALL
from ironrt.pii.rules import DEFAULT_RULES, Rules

__all__ = [
    "PAUSE_S",
    "PIECE_MAX",
    "PIECE_MIN",
    "PIECE_START",
    "STEP_S",
    "TURN_S",
    "Pace",
    "Steps",
    "Turns",
    "drain",
    "find_steps",
]

T = TypeVar("T")
#: Work done between two points where the loop may run; the value is the work's result.
Steps = Generator[None, None, T]

#: What one step should take: half the loop's turn (`TURN_S`), so a turn overruns by at
#: most about this much. Each step has a fixed cost (every detector family searches its
#: piece once): in steps of 0.5 ms a 1 MiB dense prompt cost 1.37x the CPU of one
#: whole-text scan, in steps of 1 ms 1.23x (medians of 15).
STEP_S = 0.001
#: Fewer characters than this and the fixed cost of a step outweighs its scan.
PIECE_MIN = 1024
#: Prose-only pieces (the fast case) gain little beyond this, and a piece sized on prose
#: that turns out dense PII takes 16K x 0.6 µs, 10 ms.
PIECE_MAX = 16 * 1024
#: The first step's size, before any was measured.
PIECE_START = 4096
#: Loop time the large checks in progress share before the loop gets a turn: what a call
#: or a control request waits at most per turn it needs.
TURN_S = 0.002
#: How long a check sleeps after a turn when other work was waiting (`Turns`); the loop's
#: selector counts in milliseconds anyway.
PAUSE_S = 0.001
#: Time other tasks took in a checkpoint above which they count as waiting work (an idle
#: loop's checkpoint takes ~20 µs).
_BUSY_S = 0.0001


class Pace:
    """How many characters the next step reads, from what the last steps cost."""

    __slots__ = ("size", "step_s")

    def __init__(self, step_s: float = STEP_S, size: int = PIECE_START) -> None:
        """`step_s` 0: every step reads `size` characters (tests choose tiny pieces)."""
        self.step_s = step_s
        self.size = size

    @classmethod
    def whole(cls) -> Pace:
        """One step per text: the inline path, where nothing runs between steps anyway."""
        return cls(step_s=0.0, size=sys.maxsize)

    def took(self, chars: int, seconds: float) -> None:
        """A step read `chars` characters (held tail included) in `seconds`."""
        if self.step_s <= 0.0 or chars <= 0:
            return
        per_char = max(seconds, 1e-7) / chars
        # Shrink at once, grow at most twofold: text that turns dense costs one long step.
        wanted = min(self.step_s / per_char, 2 * self.size)
        self.size = int(min(PIECE_MAX, max(PIECE_MIN, wanted)))


def find_steps(
    text: str, pace: Pace, *, json_text: bool = False, rules: Rules = DEFAULT_RULES
) -> Iterator[tuple[str, list[Finding]]]:
    """`text` in consecutive stretches, each with its findings (offsets into the stretch).

    The stretches join to `text`, and their findings, shifted, are `find_pii(text,
    json_text=json_text)`. A text no longer than `pace.size` is one stretch, found by
    `find_pii` itself (the fastest way when it fits in one step).

    A text scanned lately (`recall.py`) is one stretch too, its findings recalled; a larger
    one scanned here is remembered once its last stretch is read.
    """
    clock = time.perf_counter
    if len(text) <= pace.size:
        t0 = clock()
        found = find_pii(text, json_text=json_text, rules=rules)
        pace.took(len(text), clock() - t0)
        yield text, found
        return
    held = RECALL.holds(text)
    recalled = RECALL.get(text, json_text, rules) if held else None
    if recalled is not None:
        yield text, recalled
        return
    scan = PieceScan(text, json_text=json_text, rules=rules)
    whole: list[Finding] = []  # what is remembered (none of a text too large to hold)
    offset = 0
    while not scan.done:
        size = pace.size
        read = scan.held + size
        t0 = clock()
        stretch, found = scan.step(size)
        pace.took(read, clock() - t0)
        if held:
            whole.extend(_shifted(found, offset))
            offset += len(stretch)
        yield stretch, found
    if held:
        RECALL.put(text, json_text, rules, whole)


def _shifted(found: list[Finding], offset: int) -> list[Finding]:
    if not offset:
        return found
    return [new_finding(f.type, f.start + offset, f.end + offset, f.value, f.kind) for f in found]


def drain(steps: Steps[T]) -> T:
    """Run all steps at once: the inline path."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


class Turns:
    """Runs large checks step by step, letting the event loop run every `turn_s` of them.

    The checks in progress split `turn_s` between them, so a turn of the loop waits about
    `turn_s` however many there are (plus one step each). Each agent runs one large check
    at a time (the lock passed in, one per agent), so how many there are is bounded by the
    agents calling, not by the prompts one agent sends.

    A plain checkpoint lets what is ready run once, but a control request or a call needs
    a dozen turns of the loop (accept, read, each await), and a database thread waits for
    the GIL the switch interval (5 ms) each time. So when other work ran during the
    checkpoint, the check also sleeps `PAUSE_S`: the loop waits in `select` without the
    GIL and whatever is in progress gets through. Measured (bench/stall.py --quick, 3 x 4
    MiB redacted, a loaded 2-CPU machine, one run each): another agent's call p50 16 ms
    instead of 36-56 ms, `/v1/health` p50 7 ms instead of 18-20 ms, the flood 4.7 s
    instead of 5.5 s; pausing after every turn, whether or not anything else ran, made the
    flood take 9.3 s. The price: while other work keeps coming, a large check gets about
    two thirds of the loop (a 2 ms turn, a 1 ms pause), so the agent that sent it waits
    longer; with nothing else to do it runs at full speed.
    """

    __slots__ = ("active", "spent", "turn_s")

    def __init__(self, turn_s: float) -> None:
        self.turn_s = turn_s
        self.active = 0
        #: Seconds of turns taken by all checks: what is not other work in a checkpoint.
        self.spent = 0.0

    async def run(self, lock: anyio.Lock, steps: Steps[T]) -> T:
        """Run `steps` to the end, holding `lock` (the agent's); return their result."""
        clock = time.perf_counter
        async with lock:
            self.active += 1
            try:
                start = clock()
                end = start + self.turn_s / self.active
                while True:
                    try:
                        next(steps)
                    except StopIteration as done:
                        return done.value  # type: ignore[no-any-return]
                    now = clock()
                    if now < end:
                        continue
                    self.spent += now - start
                    spent = self.spent
                    await anyio.lowlevel.checkpoint()
                    others = clock() - now - (self.spent - spent)
                    if others > _BUSY_S:
                        await anyio.sleep(PAUSE_S)
                    start = clock()
                    end = start + self.turn_s / self.active
            finally:
                self.active -= 1
