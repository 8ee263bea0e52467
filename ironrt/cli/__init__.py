"""The `ironrt` command line.

`main()` is the console script. It runs the typer app without click's standalone mode so
that every failure is rendered here, the same way: one line `ironrt: <message>` on stderr,
exit 1 for errors and 2 for usage errors, and a traceback only with `--debug`.

Start-up time is a feature: `ironrt ps` is typed all day long. So a plain `ps` runs
without typer at all (see `ps.py`); otherwise only the module that defines the command
being run is imported, and typer builds only that command (building all twenty costs more
than the request itself); `ironrt --help` loads them all. Nothing on the way imports
rich, httpx, anyio or the daemon.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ironrt.cli import ps
from ironrt.cli.context import OPTIONS, CliError
from ironrt.config import ConfigError
from ironrt.errors import IronrtError

if TYPE_CHECKING:
    from typer import Typer
    from typer.models import CommandInfo, TyperInfo

__all__ = ["COMMANDS", "main"]

#: Every command and the module that defines it, in the order `--help` lists them.
COMMANDS: dict[str, str] = {
    "start": "start",
    "ps": "agents",
    "logs": "agents",
    "stop": "fleet",
    "restart": "fleet",
    "rm": "fleet",
    "metrics": "agents",
    "budget": "agents",
    "set": "agents",
    "up": "apps",
    "down": "apps",
    "events": "observe",
    "usage": "usage",
    "traces": "usage",
    "trace": "usage",
    "limits": "limits",
    "top": "top",
    "daemon": "daemon",
    "service": "service",
    "doctor": "doctor",
    "demo": "demo",
    "version": "daemon",
}
#: Root options that take a value, to find the command name behind them.
_VALUED_OPTIONS = {"--home"}

_commands: dict[str, CommandInfo] = {}
_groups: dict[str, TyperInfo] = {}


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


def load(name: str | None) -> Any:
    """The typer app, given the commands needed to run `name`: that one alone, or all of
    them if it is not one of ours (so that `--help` and "no such command" see them all)."""
    from ironrt.cli.app import app

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
    _resolve_annotations(app)
    return app


def _resolve_annotations(app: Typer) -> None:
    """Evaluate the callbacks' annotations once, here. The command modules use
    `from __future__ import annotations`, so each annotation is a string, which typer
    evaluates four times (twice in each signature read, and it reads each command's
    twice): ~30 ms of `ironrt --help`. Given the values, typer reads the same objects it
    would have evaluated itself (with `inspect.get_annotations`, as it does)."""
    import inspect

    callbacks: list[Any] = [app.registered_callback.callback] if app.registered_callback else []
    callbacks += [command.callback for command in app.registered_commands]
    for group in app.registered_groups:
        callbacks.append(group.callback)
        if group.typer_instance is not None:
            _resolve_annotations(group.typer_instance)
    for callback in callbacks:
        if inspect.isfunction(callback) and any(
            isinstance(a, str) for a in callback.__annotations__.values()
        ):
            callback.__annotations__ = inspect.get_annotations(callback, eval_str=True)


def _print_traceback() -> None:
    import traceback  # only with --debug: not worth importing on every run

    traceback.print_exc()


def _say(message: str) -> None:
    print(f"ironrt: {message}", file=sys.stderr)


def _usage_message(exc: Any) -> str:
    message: str = exc.format_message()
    message = message.replace("Value error, ", "")  # typer's wording for a bad choice
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "ironrt"
    if type(exc).__name__ == "NoSuchOption" and path.endswith(" start"):
        # An option meant for the agent: say how to pass it, rather than start without it.
        option = getattr(exc, "option_name", "OPTION")
        return (
            f"{message.rstrip('.')}; nothing was started. An option for the agent goes "
            f"after `--`: ironrt start SCRIPT -- {option}"
        )
    return f"{message.rstrip('.')} (see '{path} --help')"


def _run_typer(args: list[str]) -> int:
    import typer

    from ironrt.cli import coerce

    # typer vendors click in recent versions and uses click itself in older ones; its
    # BadParameter is a click exception either way, so find the base classes through it.
    mro = typer.BadParameter.__mro__
    click_error: type[Exception] = next(c for c in mro if c.__name__ == "ClickException")
    usage_error: type[Exception] = next(c for c in mro if c.__name__ == "UsageError")
    coerce.install()
    try:
        result = load(command_name(args))(args=args, prog_name="ironrt", standalone_mode=False)
    except usage_error as error:
        exc: Any = error
        if OPTIONS.debug:
            _print_traceback()
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.ctx.get_help())  # a bare `ironrt daemon`
            return 0
        _say(_usage_message(exc))
        return 2
    except click_error as error:
        _say(getattr(error, "format_message", error.__str__)())
        return int(getattr(error, "exit_code", 1))
    return result if isinstance(result, int) else 0


def _guarded(run: Callable[[], int]) -> int:
    """Run a command, turning every failure into one line and an exit code."""
    try:
        return run()
    except (IronrtError, CliError, ConfigError) as exc:
        if OPTIONS.debug:
            _print_traceback()
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
            _print_traceback()
        else:
            _say(f"unexpected error: {exc!r} (run with --debug for the traceback)")
        return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        fast = ps.fast_args(args)
    except CliError as exc:  # a bad --home: a usage error, in typer's words for one
        _say(f"Invalid value for --home: {exc} (see 'ironrt --help')")
        return 2
    if fast is None:
        return _guarded(lambda: _run_typer(args))

    def run_ps() -> int:
        ps.run(**fast)
        return 0

    return _guarded(run_ps)
