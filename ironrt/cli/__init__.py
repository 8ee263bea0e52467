"""The `ironrt` command line.

`main()` is the console script. It runs the typer app without click's standalone mode so
that every failure is rendered here, the same way: one line `ironrt: <message>` on stderr,
exit 1 for errors and 2 for usage errors, and a traceback only with `--debug`.

Start-up time is a feature: `ironrt ps` is typed all day long. So only the module that
defines the command being run is imported, and typer builds only that command (building
all twenty costs more than the request itself); `ironrt --help` loads them all. Nothing on
the way imports rich, httpx, anyio or the daemon.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import typer
from typer.models import CommandInfo, TyperInfo

from ironrt.cli import coerce
from ironrt.cli.app import OPTIONS, CliError, app
from ironrt.config import ConfigError
from ironrt.errors import IronrtError

__all__ = ["COMMANDS", "app", "main"]

#: Every command and the module that defines it, in the order `--help` lists them.
COMMANDS: dict[str, str] = {
    "start": "agents",
    "ps": "agents",
    "logs": "agents",
    "stop": "agents",
    "restart": "agents",
    "rm": "agents",
    "metrics": "agents",
    "budget": "agents",
    "set": "agents",
    "events": "observe",
    "usage": "observe",
    "traces": "observe",
    "limits": "observe",
    "top": "observe",
    "daemon": "daemon",
    "doctor": "doctor",
    "demo": "demo",
    "version": "daemon",
}
#: Root options that take a value, to find the command name behind them.
_VALUED_OPTIONS = {"--home"}

# typer vendors click in recent versions and uses click itself in older ones; its
# BadParameter is a click exception either way, so find the base classes through it.
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


def command_name(argv: list[str]) -> str | None:
    """The subcommand named in `argv`, skipping the root options before it."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUED_OPTIONS:
            skip = True
        elif arg == "--" or not arg.startswith("-"):
            return None if arg == "--" else arg
    return None


_commands: dict[str, CommandInfo] = {}
_groups: dict[str, TyperInfo] = {}


def load(name: str | None) -> None:
    """Give the app the commands needed to run `name`: that one alone, or all of them if
    it is not one of ours (so that `--help` and "no such command" see the full list)."""
    modules = [COMMANDS[name]] if name in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module in modules:
        importlib.import_module(f"ironrt.cli.{module}")
    # Modules register on import, once: remember everything registered so far, then
    # hand typer only what this run needs.
    _commands.update((c.name or "", c) for c in app.registered_commands)
    _groups.update((g.name or "", g) for g in app.registered_groups)
    wanted = [name] if name in COMMANDS else list(COMMANDS)
    app.registered_commands[:] = [_commands[n] for n in wanted if n in _commands]
    app.registered_groups[:] = [_groups[n] for n in wanted if n in _groups]


def _say(message: str) -> None:
    print(f"ironrt: {message}", file=sys.stderr)


def _usage_message(exc: Exception) -> str:
    message: str = exc.format_message()  # type: ignore[attr-defined]
    message = message.replace("Value error, ", "")  # typer's wording for a bad choice
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "ironrt"
    return f"{message.rstrip('.')} (see '{path} --help')"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    coerce.install()
    try:
        load(command_name(args))
        result = app(args=args, prog_name="ironrt", standalone_mode=False)
    except _UsageError as exc:
        if OPTIONS.debug:
            traceback.print_exc()
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.ctx.get_help())  # type: ignore[attr-defined]  # a bare `ironrt daemon`
            return 0
        _say(_usage_message(exc))
        return 2
    except _ClickException as exc:
        _say(exc.format_message())  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 1))
    except (IronrtError, CliError, ConfigError) as exc:
        if OPTIONS.debug:
            traceback.print_exc()
        _say(str(exc))
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`ironrt logs ID | head`): not an error worth a word; point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if OPTIONS.debug:
            traceback.print_exc()
        else:
            _say(f"unexpected error: {exc!r} (run with --debug for the traceback)")
        return 1
    return result if isinstance(result, int) else 0
