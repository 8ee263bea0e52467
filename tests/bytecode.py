"""Compile ironrt's modules to bytecode once, before a test session starts daemons.

Every daemon, CLI run and log relay a test starts is a new interpreter importing ironrt.
Where `PYTHONDONTWRITEBYTECODE` is set (this project's CI image sets it) and ironrt is an
editable install (the README's test command), no interpreter ever writes ironrt's
bytecode, so each one compiles all of it again: a daemon's start took ~800 ms instead of
~440, over the ~300 daemons of a test run. A wheel install has the bytecode (pip compiles
at install), so compiling once makes the tests run the ironrt users run. (The benches
that time starts do the same their own way: bench/_common.py's `as_installed`.)
"""

from __future__ import annotations

import compileall
from pathlib import Path

import ironrt


def compile_ironrt() -> None:
    """Write what is missing or stale (a no-op when all is current, ~0.2 s of stat calls;
    ~0.8 s from nothing). Each file is written whole and renamed, so two processes doing
    it at once do no harm."""
    compileall.compile_dir(Path(ironrt.__file__).parent, quiet=2)
