"""What every command shares, without typer: the global options, the client, JSON output.

Kept free of typer (and rich) because the fast path of `ironrt ps` (see `ps.py`) runs on
it alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import msgspec

if TYPE_CHECKING:
    from ironrt.client import Runtime
    from ironrt.config import Settings


@dataclass(slots=True)
class Options:
    """The global options, set before any command runs."""

    home: Path | None = None
    no_autostart: bool = False
    debug: bool = False

    def set(self, home: str | None, no_autostart: bool, debug: bool) -> None:
        """CliError for a `--home` that is no folder (a usage error: nothing has run; the
        message follows "Invalid value for --home: ", typer's words for one)."""
        self.debug = debug
        if home is not None and not home.strip():
            # Path("") is Path("."): the current folder would silently become the home.
            raise CliError("needs a folder")
        self.home = Path(home).expanduser().resolve() if home is not None else None
        if self.home is not None and self.home.exists() and not self.home.is_dir():
            raise CliError(f"{self.home}: not a folder")
        self.no_autostart = no_autostart


OPTIONS = Options()


class CliError(Exception):
    """A failure the CLI itself detects; rendered like the client's errors."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


def environ() -> dict[str, str]:
    """The process environment with the global options applied."""
    env = dict(os.environ)
    if OPTIONS.home is not None:
        env["IRONRT_HOME"] = str(OPTIONS.home)
    if OPTIONS.no_autostart:
        env["IRONRT_NO_AUTOSTART"] = "1"
    return env


def settings() -> Settings:
    from ironrt.config import Settings

    return Settings.load(environ())


def runtime(*, autostart: bool | None = None, timeout: float = 60.0) -> Runtime:
    """A client for the daemon of this home; `autostart=False` for commands that must not
    start one (stopping or inspecting a daemon)."""
    from ironrt.client import Runtime

    if OPTIONS.no_autostart:
        autostart = False
    return Runtime(home=OPTIONS.home, autostart=autostart, timeout=timeout)


def agent_names(rt: Runtime) -> dict[str, str]:
    """The name of every agent, by id (to show names next to ids)."""
    return {a.id: a.name for a in rt.list_agents()}


def print_json(value: object) -> None:
    """Stable, indented JSON of protocol Structs (field order is the Struct's)."""
    data = msgspec.json.format(msgspec.json.encode(value), indent=2)
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.flush()


def print_json_line(value: object) -> None:
    """One compact JSON document per line (NDJSON), for followed streams."""
    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
    sys.stdout.flush()


@contextlib.contextmanager
def daemon_gone_ends_follower(follow: bool, *, stream: bool = True) -> Iterator[None]:
    """A follower (`events -f`, `top`) whose daemon stops says so and exits 1. For a
    followed `stream`, its simple end means the same: the daemon closed it on its way
    out (a follower never ends otherwise)."""
    import typer

    from ironrt.errors import DaemonUnavailable

    try:
        yield
    except (DaemonUnavailable, ConnectionError) as exc:
        if not follow:
            raise
        print(f"ironrt: the daemon stopped ({exc})", file=sys.stderr)
        raise typer.Exit(1) from None
    if follow and stream:
        print("ironrt: the daemon stopped", file=sys.stderr)
        raise typer.Exit(1)
