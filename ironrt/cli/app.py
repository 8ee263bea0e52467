"""The typer application, its global options, and the parameter types commands share.

Kept apart from `__init__` so that each command module registers itself on `app` without
importing the others (`__init__` imports only the module of the command being run).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ironrt.cli.context import OPTIONS, CliError

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


def _print_version(value: bool) -> None:
    if value:
        from ironrt._version import __version__

        print(f"ironrt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    home: Annotated[
        str | None,  # not Path: typer makes Path("") the current folder
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
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print ironrt's version and exit.",
        ),
    ] = False,
) -> None:
    try:
        OPTIONS.set(home, no_autostart, debug)
    except CliError as exc:
        raise typer.BadParameter(str(exc), param_hint="--home") from None


#: Parameters repeated across commands, declared once.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
#: An agent's rate limits, as `start` and `set` take them.
RpmOption = Annotated[
    int | None, typer.Option("--rpm", min=1, metavar="N", help="Max LLM requests per minute.")
]
TpmOption = Annotated[
    int | None, typer.Option("--tpm", min=1, metavar="N", help="Max LLM tokens per minute.")
]
AgentRef = Annotated[
    str,
    typer.Argument(metavar="ID", help="Agent id, unique id prefix, or name.", show_default=False),
]
#: A PII type selection, as `start`, `set` and `limits set` take it.
PiiTypesOption = Annotated[
    str | None,
    typer.Option(
        "--pii-types",
        metavar="TYPES",
        help="Which PII types to act on: 'email,phone' (these get --pii, others off), "
        "'email=redact,secret=block' (own actions, others follow --pii), or both mixed. "
        "Types: email, phone, card, ssn, iban, ip, secret, or a pii.toml entity.",
    ),
]


def checked_pii_types(spec: str, mode: str) -> dict[str, Any]:
    """`--pii-types` as the API's map, names without an action getting `mode`; a malformed
    one is a usage error naming the option, before any request. (Whether each name is a
    type the agent's detectors know is the daemon's to say.)"""
    from ironrt.values import parse_pii_types

    try:
        return parse_pii_types(spec, mode)
    except ValueError as exc:
        reason = str(exc).removeprefix("`pii_types`: ")
        raise typer.BadParameter(reason, param_hint="'--pii-types'") from None
