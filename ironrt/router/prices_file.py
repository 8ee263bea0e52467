"""`$IRONRT_HOME/prices.toml`, read once at start: the prices and output caps a user
configures. The file is read here; what its tables mean is the kernel's
(`governance.pricing.configured_prices`, `governance.output_limits.configured_output_limits`).

    [models."my-finetune"]
    input_mtok = 0.30      # USD per million input tokens
    output_mtok = 1.20
    max_output_tokens = 32768
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ironrt.governance.output_limits import configured_output_limits
from ironrt.governance.pricing import ConfiguredPrice, configured_prices
from ironrt.toml_files import load_toml


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return load_toml(path)


def load_configured(path: Path) -> dict[str, ConfiguredPrice]:
    """The prices of `path` ({} without the file); ValueError naming what is wrong."""
    return configured_prices(_read(path), str(path))


def load_output_limits(path: Path) -> dict[str, int]:
    """The output caps of `path` ({} without the file); ValueError naming what is wrong."""
    return configured_output_limits(_read(path), str(path))
