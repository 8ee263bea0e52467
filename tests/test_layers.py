"""The one-way layering of the package (protocol/errors/config → governance → policies,
providers → router → supervisor → control → daemon → cli), checked by import-linter
against the contract in pyproject.toml, so CI fails on an import that points back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_the_layers_contract_is_kept() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_the_contract_names_every_package() -> None:
    """A new package must be placed in a layer, or it escapes the contract."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["type"] == "layers"]
    named = {
        name.strip()
        for layer in contract["layers"]
        for part in layer.replace(":", "|").split("|")
        for name in [part]
    }
    packages = {p.name for p in (ROOT / "ironrt").iterdir() if (p / "__init__.py").exists()}
    assert packages - {"demo_agents"} <= named, sorted(packages - named)
