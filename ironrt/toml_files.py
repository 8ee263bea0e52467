"""Reading the TOML files ironrt takes (config.toml, keys.toml, prices.toml, ironrt.toml).

tomllib (tomli before Python 3.11) is imported at the first file read, not with the
modules that read one: most daemon starts and CLI commands read none, and the import is
~4 ms of the daemon's start.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["load_toml"]


def load_toml(path: Path) -> dict[str, Any]:
    """The file's tables. OSError if it cannot be read; ValueError if it is not TOML
    (tomllib's `TOMLDecodeError`, or bytes that are not UTF-8)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    with path.open("rb") as fh:
        return tomllib.load(fh)
