"""The typer application and the options every command shares.

Kept apart from `__init__` so that each command module can register itself on `app`
without importing the others. Nothing here may import rich, httpx, anyio or the daemon:
this module is on the path of every `ironrt` invocation, and `ironrt ps` must answer in
a blink.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import msgspec
import typer

if TYPE_CHECKING:
    from ironrt.client import Runtime
    from ironrt.config import Settings

HELP = """Run AI agents under control: a supervisor daemon with a governance router.

The first command that needs the daemon starts it in the background (unless
--no-autostart or IRONRT_NO_AUTOSTART=1). An agent ID argument accepts a full id,
a unique id prefix, or a name.
"""

app = typer.Typer(
    name="ironrt",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    # Plain click help and no pretty tracebacks: both would import rich on every run.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@dataclass(slots=True)
class Options:
    """The global options, set by the root callback before any command runs."""

    home: Path | None = None
    no_autostart: bool = False
    debug: bool = False


OPTIONS = Options()


@app.callback()
def _root(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            metavar="PATH",
            help="State folder (default: $IRONRT_HOME or ~/.local/state/ironrt).",
        ),
    ] = None,
    no_autostart: Annotated[
        bool,
        typer.Option(
            "--no-autostart",
            help="Fail instead of starting the daemon (also IRONRT_NO_AUTOSTART=1).",
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    OPTIONS.home = home.expanduser().resolve() if home is not None else None
    OPTIONS.no_autostart = no_autostart
    OPTIONS.debug = debug


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


def print_json(value: object) -> None:
    """Stable, indented JSON of protocol Structs (field order is the Struct's)."""
    data = msgspec.json.format(msgspec.json.encode(value), indent=2)
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.flush()


def print_json_line(value: object) -> None:
    """One compact JSON document per line (NDJSON), for followed streams."""
    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
    sys.stdout.flush()


#: Options repeated across commands, declared once.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AgentRef = Annotated[
    str,
    typer.Argument(metavar="ID", help="Agent id, unique id prefix, or name.", show_default=False),
]
