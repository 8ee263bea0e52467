"""`$IRONRT_HOME/prices.toml`, read once at start: the prices and output caps a user
configures. The file is read here; what its tables mean is the kernel's
(`governance.pricing.configured_prices`, `governance.output_limits.configured_output_limits`).

    [models."my-finetune"]
    input_mtok = 0.30      # USD per million input tokens
    output_mtok = 1.20
    max_output_tokens = 32768
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ironrt.governance.output_limits import configured_output_limits
from ironrt.governance.pricing import ConfiguredPrice, configured_prices


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    # Imported only for a file (most homes have none): off the daemon's start.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    with path.open("rb") as fh:
        return tomllib.load(fh)


def load_configured(path: Path) -> dict[str, ConfiguredPrice]:
    """The prices of `path` ({} without the file); ValueError naming what is wrong."""
    return configured_prices(_read(path), str(path))


def load_output_limits(path: Path) -> dict[str, int]:
    """The output caps of `path` ({} without the file); ValueError naming what is wrong."""
    return configured_output_limits(_read(path), str(path))
