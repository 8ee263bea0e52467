"""Both library-mode scenarios, run at once (each in its own process and home), and what
the real CLI shows for each home afterwards.

- `sdks_scenario.py` runs with no daemon at all; a daemon is started on its home only
  after it ended, to show its records.
- `scopes_scenario.py` runs beside a daemon already running on its home.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from ironrt.tempdaemon import TempDaemon
from tests.library.helpers import Runs, Scenario, records


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    out = tmp_path_factory.mktemp("library")
    with ExitStack() as stack:
        quiet = TempDaemon()  # its home only, for now
        stack.callback(quiet.__exit__, None, None, None)
        sdks = Scenario("sdks_scenario.py", quiet.home, out / "sdks.json")
        stack.callback(sdks.kill)
        busy = stack.enter_context(TempDaemon())
        scopes = Scenario("scopes_scenario.py", busy.home, out / "scopes.json")
        stack.callback(scopes.kill)

        sdks_seen = sdks.result()
        daemon_after_sdks = quiet.rt.ping()
        quiet.start()
        scopes_seen = scopes.result()
        quiet_records, busy_records = records(quiet, busy)
        yield Runs(
            sdks_seen,
            scopes_seen,
            quiet_records,
            busy_records,
            (quiet.home, busy.home),
            daemon_after_sdks,
        )
