"""The `ironrt` command line.

`main()` is the console script. It runs the typer app without click's standalone mode so
that every failure is rendered here, the same way: one line `ironrt: <message>` on stderr,
exit 1 for errors and 2 for usage errors, and a traceback only with `--debug`.

Importing this package must stay cheap (typer, msgspec and the stdlib client only):
`ironrt ps` is typed all day long, and rich, anyio or the daemon would triple its start-up.
"""

from __future__ import annotations

import sys
import traceback

import typer

from ironrt.cli import agents, coerce, daemon, demo, doctor, observe
from ironrt.cli.app import OPTIONS, CliError, app
from ironrt.config import ConfigError
from ironrt.errors import IronrtError

__all__ = ["app", "main"]

_ = (agents, daemon, demo, doctor, observe)  # imported for their commands
coerce.install()

# typer vendors click in recent versions and uses click itself in older ones; its
# BadParameter is a click exception either way, so find the base class through it.
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


def _say(message: str) -> None:
    print(f"ironrt: {message}", file=sys.stderr)


def _usage_message(exc: Exception) -> str:
    message: str = exc.format_message()  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "ironrt"
    message = message.replace("Value error, ", "")  # typer's wording for a bad choice
    return f"{message.rstrip('.')} (see '{path} --help')"


def main(argv: list[str] | None = None) -> int:
    try:
        result = app(args=argv, prog_name="ironrt", standalone_mode=False)
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
        # The reader went away (`ironrt logs ID | head`): not an error worth a word.
        sys.stderr.close()
        return 0
    except Exception as exc:
        if OPTIONS.debug:
            traceback.print_exc()
        else:
            _say(f"unexpected error: {exc!r} (run with --debug for the traceback)")
        return 1
    return result if isinstance(result, int) else 0
