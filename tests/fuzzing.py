"""How long the fuzzers run: a few seconds each in CI, as long as you like on demand.

    IRONRT_FUZZ_EXAMPLES=5000 python -m pytest tests/control/test_fuzz_control.py \\
        tests/router/test_fuzz_router.py

- `IRONRT_FUZZ_EXAMPLES`: examples per fuzz test (unset: the small CI number each test
  names). Setting it also makes the run random and lifts the time cap below.
- `IRONRT_FUZZ_SECONDS`: wall-clock cap per fuzz test (CI default: `CI_SECONDS`; a long run
  has none unless given). Past it no new example is sent; a failure already found is still
  shrunk and reported in full.

CI uses a fixed seed (`derandomize`): the same inputs every run, so a red CI is a
regression and never bad luck, and the minimal failing examples it prints are the same ones
a developer gets locally. A long run exists to find new bugs, so it is random; it keeps
hypothesis' database of failing examples under the temp directory (never in the repo), so a
failure it found is tried first the next time.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

EXAMPLES_ENV = "IRONRT_FUZZ_EXAMPLES"
SECONDS_ENV = "IRONRT_FUZZ_SECONDS"
#: The cap on one fuzz test in CI: a safety net for a slow machine, rarely reached.
CI_SECONDS = 8.0

F = TypeVar("F", bound=Callable[..., Any])


def long_run() -> bool:
    return bool(os.environ.get(EXAMPLES_ENV))


def fuzz_settings(ci_examples: int) -> settings:
    """Settings for one fuzz test: `ci_examples` fixed-seed examples in CI."""
    if not long_run():
        return settings(
            max_examples=ci_examples,
            deadline=None,
            derandomize=True,
            database=None,
            print_blob=True,
            suppress_health_check=_SLOW_IS_FINE,
        )
    db = Path(tempfile.gettempdir()) / "ironrt-fuzz-hypothesis"
    return settings(
        max_examples=int(os.environ[EXAMPLES_ENV]),
        deadline=None,
        derandomize=False,
        database=DirectoryBasedExampleDatabase(db),
        print_blob=True,
        suppress_health_check=_SLOW_IS_FINE,
    )


#: Every example is a real request to a real daemon: slow by hypothesis' standards.
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]


class TimeCap:
    """Stops sending new examples once the test's wall-clock budget is spent.

    Hypothesis has no wall-clock limit of its own; past the cap an example returns at once.
    Once an example has failed, the cap is off: shrinking must run every candidate for
    real, or a skipped one would pass and the failure would be reported as flaky.
    """

    def __init__(self) -> None:
        raw = os.environ.get(SECONDS_ENV)
        self.seconds: float | None = float(raw) if raw else (None if long_run() else CI_SECONDS)
        self.started = time.monotonic()
        self.failed = False
        self.skipped = 0

    def spent(self) -> bool:
        if self.failed or self.seconds is None:
            return False
        return time.monotonic() - self.started > self.seconds

    def guard(self, fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            if self.spent():
                self.skipped += 1
                return None
            try:
                return fn(*args, **kwargs)
            except BaseException:
                self.failed = True
                raise

        return run  # type: ignore[return-value]
