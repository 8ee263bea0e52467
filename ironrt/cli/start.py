"""`ironrt start`: an agent started under supervision, with every option of its policy
(restart, budget, PII, limits, logs, resources, environment), checked before anything is
sent; then a warning for what this shell asks that the running daemon does not do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ironrt.cli.app import PiiTypesOption, RpmOption, TpmOption, app, checked_pii_types
from ironrt.cli.context import runtime
from ironrt.protocol import OnBudget, PiiMode, RestartPolicy
from ironrt.values import (
    DEFAULT_MAX_RESTARTS,
    check_resource_limits,
    parse_cpu_seconds,
    parse_memory,
    parse_size,
    parse_uptime,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ironrt.protocol import Health

T = TypeVar("T")

START_HELP = """Start SCRIPT as a supervised agent and print its id.

SCRIPT is a .py file (run with your current Python or --python) or any executable.
Options before `--` are ironrt's, before or after SCRIPT: an unknown one is an error
(a typo must never start an agent without its budget). Plain words after SCRIPT go to
the agent; so does everything after `--`, options included:

\b
    ironrt start agents/hello.py --budget 5
    ironrt start --name bot agent.py input.txt
    ironrt start agent.py --budget 5 -- --verbose --name passed-to-the-agent
    ironrt start -- node agent.js
"""


def _parse_env(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected K=V, got {pair!r}", param_hint="'--env'")
        out[key] = value
    return out


def _max_restarts(text: str) -> int | None:
    if text.strip().lower() == "unlimited":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise typer.BadParameter(
            f"expected a whole number or 'unlimited', got {text!r}", param_hint="'--max-restarts'"
        )
    return value


def _open_files(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    check_resource_limits(None, value, None)
    return value


def _pii_file(path: Path) -> str:
    """Absolute against this shell's directory (the daemon runs elsewhere), and there."""
    found = Path(os.path.abspath(path.expanduser()))
    if not found.is_file():
        raise typer.BadParameter(f"no such file: {found}", param_hint="'--pii-file'")
    return str(found)


def _parsed(parse: Callable[[str], T], text: str, option: str) -> T:
    try:
        return parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None


@app.command(
    "start",
    help=START_HELP,
    context_settings={"allow_interspersed_args": True},
)
def start(
    script: Annotated[str, typer.Argument(metavar="SCRIPT", show_default=False)],
    args: Annotated[list[str] | None, typer.Argument(metavar="ARGS", show_default=False)] = None,
    budget: Annotated[
        float | None,
        typer.Option("--budget", metavar="USD", min=0, help="Spend limit in USD (default: none)."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name (default: from SCRIPT).")] = None,
    restart: Annotated[RestartPolicy, typer.Option("--restart", help="Restart policy.")] = "no",
    max_restarts: Annotated[
        str,
        typer.Option(
            "--max-restarts",
            metavar="N|unlimited",
            help="Restarts in a row after runs shorter than --min-uptime before giving up.",
        ),
    ] = str(DEFAULT_MAX_RESTARTS),
    min_uptime: Annotated[
        str,
        typer.Option(
            "--min-uptime",
            metavar="DUR",
            help="A run shorter than this (500ms, 5s, 2m) is unstable; a longer one resets "
            "the count.",
        ),
    ] = "5s",
    log_max_size: Annotated[
        str | None,
        typer.Option(
            "--log-max-size",
            metavar="SIZE",
            help="Rotate the log at this size (1MB, 512KB; default 10MB or the daemon's).",
        ),
    ] = None,
    log_keep: Annotated[
        int | None,
        typer.Option("--log-keep", min=1, max=100, metavar="N", help="Rotated log files kept."),
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            metavar="SIZE",
            help="Restart the agent when its process tree's memory (RSS) exceeds this "
            "(512M, 2G), whatever --restart says (PM2's max_memory_restart).",
        ),
    ] = None,
    max_open_files: Annotated[
        str | None,
        typer.Option(
            "--max-open-files",
            metavar="N",
            help="Open files each of its processes may hold (RLIMIT_NOFILE, soft and hard).",
        ),
    ] = None,
    max_cpu_seconds: Annotated[
        str | None,
        typer.Option(
            "--max-cpu-seconds",
            metavar="DUR",
            help="CPU time each of its processes may use (90, 2m, 1h; RLIMIT_CPU): then "
            "the kernel ends it (SIGXCPU) and its restart policy applies.",
        ),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", metavar="K=V", help="Set a variable (repeatable).")
    ] = None,
    env_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--env-file",
            metavar="FILE",
            help="Variables from a dotenv file, read at each start and never stored: the "
            "place for secrets (repeatable; later files win).",
        ),
    ] = None,
    python: Annotated[
        str | None, typer.Option("--python", metavar="PATH", help="Interpreter for a .py SCRIPT.")
    ] = None,
    on_budget: Annotated[
        OnBudget,
        typer.Option(
            "--on-budget",
            help="When a budget is spent: block its calls, pause the agent until there is "
            "budget again, or stop it.",
        ),
    ] = "block",
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            metavar="NAME",
            help="Project of the agent: its calls must also fit project:NAME's limits.",
        ),
    ] = None,
    pii: Annotated[
        PiiMode, typer.Option("--pii", help="PII handling in prompts/replies.")
    ] = "detect",
    pii_types: PiiTypesOption = None,
    pii_file: Annotated[
        Path | None,
        typer.Option(
            "--pii-file",
            metavar="FILE",
            help="The agent's own pii.toml: its custom entities add to the home's.",
        ),
    ] = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    allow_unmetered: Annotated[
        bool, typer.Option("--allow-unmetered", help="Allow calls ironrt cannot price.")
    ] = False,
    cwd: Annotated[
        Path | None, typer.Option("--cwd", metavar="DIR", help="Working directory (default: here).")
    ] = None,
) -> None:
    if cwd is not None and not cwd.is_dir():
        raise typer.BadParameter(f"no such directory: {cwd}", param_hint="'--cwd'")
    types = checked_pii_types(pii_types, pii) if pii_types is not None else None
    own_pii = _pii_file(pii_file) if pii_file is not None else None
    agent_id = runtime().start_agent(
        script,
        args or [],
        name=name,
        budget=budget,
        env=_parse_env(env),
        env_files=[str(p) for p in env_file or ()],
        restart=restart,
        max_restarts=_max_restarts(max_restarts),
        min_uptime=_parsed(parse_uptime, min_uptime, "--min-uptime"),
        # `is not None`: an empty value is a mistake to say, not the option left out.
        log_max_size=(
            _parsed(parse_size, log_max_size, "--log-max-size")
            if log_max_size is not None
            else None
        ),
        log_keep=log_keep,
        max_memory=(
            _parsed(parse_memory, max_memory, "--max-memory") if max_memory is not None else None
        ),
        max_open_files=(
            _parsed(_open_files, max_open_files, "--max-open-files")
            if max_open_files is not None
            else None
        ),
        max_cpu_seconds=(
            _parsed(parse_cpu_seconds, max_cpu_seconds, "--max-cpu-seconds")
            if max_cpu_seconds is not None
            else None
        ),
        cwd=str(cwd.resolve()) if cwd else os.getcwd(),
        on_budget=on_budget,
        pii=pii,
        pii_types=types,
        pii_file=own_pii,
        rpm=rpm,
        tpm=tpm,
        allow_unmetered=allow_unmetered,
        python=python,
        project=project,
    )
    print(agent_id)
    for line in _mismatches(runtime().health(), os.environ):
        print(f"ironrt: warning: {line}", file=sys.stderr)


_RESTART = "ironrt daemon stop --keep-agents && {env}ironrt daemon start"


def _mismatches(health: Health, environ: Mapping[str, str]) -> list[str]:
    """What this shell asks for that the running daemon does not do. The daemon reads its
    settings and keys when it starts: exported later, they reach only this command, and
    the agent would get a 401 or a real call it did not expect."""
    from ironrt.governance.tokens import TOKEN_PREFIX
    from ironrt.keys import ENV_NAMES
    from ironrt.settings_table import Flag

    found = []
    try:  # read as the daemon reads it (settings_table.Flag); a bad value: nothing to say
        offline = Flag().parse(environ["IRONRT_OFFLINE"]) if environ.get("IRONRT_OFFLINE") else None
    except ValueError:
        offline = None
    if offline is True and not health.offline:
        how = _RESTART.format(env="IRONRT_OFFLINE=1 ")
        found.append(f"IRONRT_OFFLINE is set here but the daemon calls real providers: {how}")
    elif offline is False and health.offline:
        how = _RESTART.format(env="IRONRT_OFFLINE=0 ")
        found.append(f"IRONRT_OFFLINE=0 here but the daemon answers offline: {how}")
    if not health.offline:
        for provider, names in ENV_NAMES.items():
            name = next((n for n in names if environ.get(n)), None)
            value = environ.get(name or "", "")
            # Inside an agent the variable holds its IC_TOKEN, not a key: nothing to say.
            if (
                name
                and not value.startswith(TOKEN_PREFIX)
                and not health.provider_keys.get(provider)
            ):
                how = _RESTART.format(env="")
                found.append(
                    f"{name} is set here but the daemon has no {provider} key (it reads keys "
                    f"when it starts); from this shell: {how}"
                )
    return found
