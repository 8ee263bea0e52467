"""The reliability knobs shared by the breaker, retry and rate-limit policies and the forwarder.

They are settings like any other, so they are defined, read and checked with the others in
`ironrt.config` (`Settings.load` builds one `ReliabilitySettings` from the environment and
config.toml, and the daemon hands the same object to the policies and to the forwarder).
This module keeps the names the policies import, so a policy depends on its settings'
type, never on where they come from. `PROVIDERS` are the built-in providers of the
provider table (`settings_table.BUILTIN_PROVIDERS`), whose timeouts are settings of their
own.
"""

from __future__ import annotations

from ironrt.config import PROVIDERS, ReliabilitySettings, Timeouts

__all__ = ["PROVIDERS", "ReliabilitySettings", "Timeouts"]
