"""`ironrt daemon run|start|stop|status`: the daemon's life, seen from the CLI.

Only `run` imports the daemon (anyio, uvicorn, the router...); `start` spawns it as a
separate process through the client, so the CLI stays light.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ironrt.cli import render
from ironrt.cli.app import JsonFlag, app
from ironrt.cli.context import environ, fail, print_json, runtime, settings

daemon_app = typer.Typer(
    help="Run, start, stop or inspect the ironrt daemon.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(daemon_app, name="daemon")


OfflineFlag = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="Answer every call with the built-in offline provider: no key, no network "
        "(the same as IRONRT_OFFLINE=1).",
    ),
]


def _offline_env() -> None:
    """--offline: the setting the daemon reads, in the environment it is started with."""
    import os

    os.environ["IRONRT_OFFLINE"] = "1"


@daemon_app.command()
def run(offline: OfflineFlag = False) -> None:
    """Run the daemon in the foreground (for systemd or a container); Ctrl-C stops it
    and leaves the agents running."""
    import os

    if offline:
        _offline_env()
    from ironrt.config import ConfigError
    from ironrt.daemon import DaemonAlreadyRunning
    from ironrt.daemon import run as run_daemon
    from ironrt.keys import KeysFileError
    from ironrt.store.db import SchemaTooNew

    try:
        s = settings()
    except ConfigError as exc:
        fail(f"the daemon cannot start: {exc}")  # the very line `python -m ironrt.daemon` says
    # Agents and the daemon's own lookups read the home from the environment.
    os.environ.update({k: v for k, v in environ().items() if k.startswith("IRONRT_")})
    print(
        f"ironrt daemon on {s.home} (socket {s.socket_path}); logs in {s.log_path}", file=sys.stderr
    )
    try:
        run_daemon(s)
    except DaemonAlreadyRunning as exc:
        fail(str(exc))
    except (ConfigError, KeysFileError, SchemaTooNew) as exc:
        fail(f"the daemon cannot start: {exc}")


@daemon_app.command()
def start(offline: OfflineFlag = False) -> None:
    """Start the daemon in the background; returns once it answers."""
    from ironrt.config import ConfigError

    if offline:
        _offline_env()
    try:
        rt = runtime(autostart=True)  # loads and checks the settings the daemon will read
    except ConfigError as exc:
        fail(f"the daemon cannot start: {exc}")
    if rt.ping():
        h = rt.health()
        if offline and not h.offline:
            fail(
                f"the daemon already running (pid {h.pid}) on {h.home} is not offline: "
                "stop it (`ironrt daemon stop`), then start it with --offline"
            )
        print(f"ironrt daemon already running (pid {h.pid}) on {h.home}, router {h.router_url}")
        return
    rt.ensure_daemon()
    h = rt.health()
    if offline and not h.offline:  # its systemd unit started it, with the unit's settings
        fail(
            f"the daemon started (pid {h.pid}) on {h.home} by its service is not offline: "
            "set offline = true in the home's config.toml, or uninstall the service"
        )
    print(
        f"ironrt daemon started (pid {h.pid}) on {h.home}, router {h.router_url}"
        + (" (offline)" if h.offline else "")
    )


@daemon_app.command()
def stop(
    keep_agents: Annotated[
        bool, typer.Option("--keep-agents", help="Leave the agents running.")
    ] = False,
) -> None:
    """Stop the daemon (and its agents, unless --keep-agents)."""
    rt = runtime(autostart=False)
    if not rt.ping():
        print(f"no ironrt daemon is running on {rt.settings.home}")
        return
    pid = rt.health().pid
    rt.shutdown_daemon(keep_agents=keep_agents)
    print(f"ironrt daemon stopped (pid {pid})" + (", agents left running" if keep_agents else ""))


@daemon_app.command()
def status(json_: JsonFlag = False) -> None:
    """Whether the daemon runs, and its pid, version, socket, router and agents; exits 1
    if it does not run."""
    rt = runtime(autostart=False)
    if not rt.ping():
        fail(f"no ironrt daemon is running on {rt.settings.home}")
    h = rt.health()
    if json_:
        print_json(h)
        return
    counts = ", ".join(f"{n} {status}" for status, n in sorted(h.agents.items())) or "none"
    rows = [
        ("pid", str(h.pid)),
        ("version", f"{h.version} (protocol {h.protocol})"),
        ("home", h.home),
        ("socket", h.socket),
        ("router", h.router_url + (" (offline provider)" if h.offline else "")),
        ("uptime", render.duration(h.uptime_s)),
        ("agents", counts),
    ]
    print("ironrt daemon is running")
    for key, value in rows:
        print(f"  {key:<8} {value}")


@app.command("version")
def version() -> None:
    """Print the version of ironrt (and of the daemon, if one runs and differs)."""
    from ironrt._version import __version__
    from ironrt.protocol import PROTOCOL_VERSION

    print(f"ironrt {__version__} (protocol {PROTOCOL_VERSION})")
    rt = runtime(autostart=False)
    if rt.ping():
        h = rt.health()
        if (h.version, h.protocol) != (__version__, PROTOCOL_VERSION):
            print(
                f"daemon {h.version} (protocol {h.protocol}): restart it with "
                "`ironrt daemon stop && ironrt daemon start`"
            )
