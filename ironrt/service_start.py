"""Starting the daemon through systemd when ironrt is installed as a service for a home.

A client that finds no daemon starts one (autostart). When `ironrt service install` put
a unit in place for this home, a daemon started by hand would run outside the service:
no watchdog, no sandbox, no restart on failure, and the service itself could no longer
start (the home is locked). So the client asks systemd instead: `systemctl [--user]
start ironrt.service`, and says so in one line if that fails, rather than starting a
second kind of daemon behind the service's back.

A unit is ours for a home when its `Environment=IRONRT_HOME=` names that home (as
`ironrt service install` writes it); the user's units are looked at before the system's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from ironrt.errors import DaemonUnavailable
from ironrt.service_unit import UNIT_NAME

__all__ = ["installed_for", "start_service"]

Mode = Literal["user", "system"]


def _unit_dirs(environ: dict[str, str] | os._Environ[str]) -> list[tuple[Mode, Path]]:
    config = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        ("user", Path(config) / "systemd" / "user"),
        ("system", Path("/etc/systemd/system")),
    ]


def _home_of(unit: str) -> str | None:
    """The IRONRT_HOME an ironrt unit sets, unescaped as systemd reads it."""
    for line in unit.splitlines():
        key, _, value = line.strip().partition("=")
        if key != "Environment":
            continue
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        value = value.replace("%%", "%")
        if value.startswith("IRONRT_HOME="):
            return value.removeprefix("IRONRT_HOME=")
    return None


def installed_for(home: Path, environ: dict[str, str] | None = None) -> Mode | None:
    """Whether a systemd unit of ironrt serves `home` (and systemctl exists to start it)."""
    env = os.environ if environ is None else environ
    if shutil.which("systemctl", path=env.get("PATH")) is None:
        return None
    wanted = os.path.abspath(home)
    for mode, folder in _unit_dirs(env):
        try:
            text = (folder / UNIT_NAME).read_text(encoding="utf-8")
        except OSError:
            continue
        found = _home_of(text)
        if found is not None and os.path.abspath(found) == wanted:
            return mode
    return None


def start_service(mode: Mode, home: Path) -> None:
    """`systemctl [--user] start ironrt.service`; DaemonUnavailable in one line if refused."""
    flag = ["--user"] if mode == "user" else []
    command = ["systemctl", *flag, "start", UNIT_NAME]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DaemonUnavailable(_why(mode, home, str(exc))) from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise DaemonUnavailable(_why(mode, home, lines[-1] if lines else f"exit {done.returncode}"))


def _why(mode: Mode, home: Path, detail: str) -> str:
    flag = " --user" if mode == "user" else ""
    return (
        f"ironrt runs as a systemd {mode} service for {home}, and `systemctl{flag} start "
        f"ironrt` failed: {detail} (see `journalctl{flag} -u ironrt`)"
    )
