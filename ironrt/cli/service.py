"""`ironrt service install|uninstall|show`: the daemon as a systemd service.

The unit itself is defined in `ironrt/service_unit.py`; this module finds what varies on
this machine (the `ironrt` being run, the home, the account), writes the unit and drives
`systemctl`. Every failure is one line and a non-zero exit: systemctl missing or
failing, /etc not writable, a path that cannot go into a unit file.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from ironrt.cli.app import app
from ironrt.cli.context import environ, fail
from ironrt.config import default_home
from ironrt.service_unit import UNIT_NAME, UnitError, UnitSpec, render

SERVICE_HELP = """Run the daemon as a systemd service (Type=notify, watchdog, sandbox).

\b
    ironrt service install --user                  # this user, ~/.config/systemd/user
    ironrt service install --user --read-write ~/projects
    sudo "$(command -v ironrt)" service install --system --user-name alice
    ironrt service show                            # the unit, without writing it
    ironrt service uninstall --user

Agents run inside the service's sandbox: the file system is read-only to them but for
the home and each --read-write path. See docs/service.md.
"""

service_app = typer.Typer(
    help=SERVICE_HELP,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(service_app, name="service")

Mode = Literal["user", "system"]

SystemFlag = Annotated[
    bool,
    typer.Option(
        "--system/--user",
        help="A system service (/etc/systemd/system, needs root) or a user service (default).",
    ),
]
ReadWrite = Annotated[
    list[str] | None,
    typer.Option(
        "--read-write",
        metavar="PATH",
        help="Writable for the daemon and its agents, besides the home (repeat it).",
    ),
]
UserName = Annotated[
    str | None,
    typer.Option(
        "--user-name",
        metavar="NAME",
        help="--system: the account the daemon runs as (default: the invoking user).",
    ),
]
NoSandbox = Annotated[
    bool,
    typer.Option(
        "--no-sandbox",
        help="Leave out the file-system sandbox (for user services on kernels without "
        "unprivileged user namespaces).",
    ),
]
#: For tests and packagers: where the unit goes instead of the standard folder.
UnitDir = Annotated[Path | None, typer.Option("--unit-dir", hidden=True)]

_SHARED_TMP = (Path("/tmp"), Path("/var/tmp"))


# ---- what varies on this machine ------------------------------------------------------


def ironrt_command() -> tuple[str, ...]:
    """The `ironrt` being run, by absolute path: the console script if there is one (this
    one, or the one installed next to this Python), else `python -m ironrt`."""
    candidates = [Path(sys.argv[0])] if Path(sys.argv[0]).name == "ironrt" else []
    candidates.append(Path(sys.executable).parent / "ironrt")
    for candidate in candidates:
        path = Path(os.path.abspath(candidate))
        if path.is_file() and os.access(path, os.X_OK):
            return (str(path),)
    return (os.path.abspath(sys.executable), "-m", "ironrt")


def _account(mode: Mode, name: str | None) -> pwd.struct_passwd:
    """Who the daemon runs as: --user-name, else the user behind sudo, else ourselves."""
    if name is None and mode == "system" and os.geteuid() == 0:
        name = os.environ.get("SUDO_USER") or None
    try:
        return pwd.getpwnam(name) if name is not None else pwd.getpwuid(os.getuid())
    except KeyError:
        fail(f"--user-name: no such user: {name}")


def _home(account: pwd.struct_passwd) -> Path:
    """The home the daemon will use: --home / IRONRT_HOME if given, else the account's
    default (for another account, from its own folder, not from ours)."""
    env = environ()
    if not env.get("IRONRT_HOME", "").strip() and account.pw_uid != os.getuid():
        return Path(account.pw_dir) / ".local" / "state" / "ironrt"
    return Path(os.path.abspath(default_home(env)))


def _unit_dir(mode: Mode, override: Path | None) -> Path:
    if override is not None:
        return Path(os.path.abspath(override.expanduser()))
    if mode == "system":
        return Path("/etc/systemd/system")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def _docs() -> str | None:
    """docs/service.md as a file:// URL when this install has it (a source checkout)."""
    guide = Path(__file__).resolve().parents[2] / "docs" / "service.md"
    return guide.as_uri() if guide.is_file() else None


def _under_shared_tmp(path: Path) -> bool:
    return any(path == tmp or tmp in path.parents for tmp in _SHARED_TMP)


def _spec(
    mode: Mode,
    read_write: list[str] | None,
    user_name: str | None,
    no_sandbox: bool,
) -> tuple[UnitSpec, pwd.struct_passwd]:
    if user_name is not None and mode == "user":
        fail("--user-name is for --system services (a user service runs as its user)")
    account = _account(mode, user_name)
    home = _home(account)
    writable: list[str] = []
    for given in read_write or []:
        path = Path(os.path.abspath(Path(given).expanduser()))
        if not path.exists():
            # systemd would refuse to start the unit (226/NAMESPACE) over a missing path.
            fail(f"--read-write {given}: no such file or folder")
        writable.append(str(path))
    group = None
    if mode == "system":
        import grp

        try:
            group = grp.getgrgid(account.pw_gid).gr_name
        except KeyError:
            group = str(account.pw_gid)
    shared_tmp = any(_under_shared_tmp(Path(p)) for p in [str(home), *writable])
    spec = UnitSpec(
        mode=mode,
        command=ironrt_command(),
        home=str(home),
        read_write=tuple(writable),
        user=account.pw_name if mode == "system" else None,
        group=group,
        documentation=_docs(),
        private_tmp=not shared_tmp,
        sandbox=not no_sandbox,
    )
    return spec, account


def _rendered(spec: UnitSpec) -> str:
    try:
        return render(spec)
    except UnitError as exc:
        fail(str(exc))


# ---- side effects ----------------------------------------------------------------------


def _need_root(mode: Mode, unit_dir: Path | None, command: str) -> None:
    """Checked before anything is written, rather than failing halfway."""
    if mode == "system" and unit_dir is None and os.geteuid() != 0:
        fail(
            "--system changes /etc/systemd/system and the machine's services: run it as "
            f'root (sudo "$(command -v ironrt)" service {command} --system), or use --user'
        )


def _systemctl(exe: str, mode: Mode, *args: str) -> None:
    argv = [exe, *(["--user"] if mode == "user" else []), *args]
    shown = " ".join(["systemctl", *argv[1:]])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        fail(f"`{shown}` failed: {exc}")
    if done.returncode != 0:
        said = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        why = said[-1] if said else "no message"
        fail(f"`{shown}` failed (exit {done.returncode}): {why}")
    print(f"ran {shown}")


def _make_home(home: Path, account: pwd.struct_passwd) -> None:
    """The home exists before systemd mounts it writable (a missing ReadWritePaths= fails
    the unit), private, and owned by the account the daemon runs as."""
    own = Path(account.pw_dir)
    if own in home.parents and not own.is_dir():
        fail(
            f"{account.pw_name}'s home folder {own} does not exist: choose the daemon's "
            "home with IRONRT_HOME or --home"
        )
    missing = [p for p in [home, *home.parents] if not p.exists()]
    try:
        for path in reversed(missing):
            path.mkdir(mode=0o700)
            if os.geteuid() == 0 and account.pw_uid != 0:
                os.chown(path, account.pw_uid, account.pw_gid)
        owner = home.stat().st_uid
    except OSError as exc:
        fail(f"cannot create the home {home}: {exc.strerror or exc}")
    if not home.is_dir():
        fail(f"the home {home} is not a folder")
    if owner != account.pw_uid:
        fail(
            f"the home {home} belongs to uid {owner}, not to {account.pw_name} who runs the "
            f"daemon: chown -R {account.pw_name} {home}, or choose another with --home"
        )


def _write(path: Path, text: str, mode: Mode) -> None:
    """Atomically: systemd never reads half a unit."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{UNIT_NAME}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        why = exc.strerror or str(exc)
        extra = " (--system needs root)" if mode == "system" and os.geteuid() != 0 else ""
        fail(f"cannot write {path}: {why}{extra}")
    print(f"wrote {path}")


def _running_daemon_note(home: Path, mode: Mode) -> str | None:
    """A daemon already on this home keeps the service from starting (the home lock)."""
    from ironrt.client import Runtime

    rt = Runtime(home=home, autostart=False, timeout=5)
    try:
        if not rt.ping():
            return None
        pid = rt.health().pid
    except Exception:
        return None
    flag = " --user" if mode == "user" else ""
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        cgroup = ""
    if f"/{UNIT_NAME}" in cgroup:
        return (
            f"the service's daemon (pid {pid}) keeps its old unit until "
            f"`systemctl{flag} restart ironrt` (the agents keep running)"
        )
    return (
        f"a daemon (pid {pid}) started outside systemd already runs on {home}, so the "
        f"service cannot start: `ironrt daemon stop --keep-agents && systemctl{flag} restart "
        "ironrt` hands its agents over to the service"
    )


def _linger_note(account: pwd.struct_passwd) -> str | None:
    if Path("/var/lib/systemd/linger", account.pw_name).exists():
        return None
    return (
        "it starts when you log in and stops when you log out; to run it from boot "
        f"(and resurrect agents after a reboot): loginctl enable-linger {account.pw_name}"
    )


# ---- commands ---------------------------------------------------------------------------


@service_app.command()
def install(
    system: SystemFlag = False,
    read_write: ReadWrite = None,
    user_name: UserName = None,
    no_enable: Annotated[
        bool, typer.Option("--no-enable", help="Write the unit only; do not run systemctl.")
    ] = False,
    print_: Annotated[
        bool, typer.Option("--print", help="Print the unit instead of writing it.")
    ] = False,
    no_sandbox: NoSandbox = False,
    unit_dir: UnitDir = None,
) -> None:
    """Write the unit with this machine's paths, then daemon-reload and enable --now it."""
    mode: Mode = "system" if system else "user"
    spec, account = _spec(mode, read_write, user_name, no_sandbox)
    text = _rendered(spec)
    if print_:
        sys.stdout.write(text)
        return
    _need_root(mode, unit_dir, "install")
    exe = None if no_enable else shutil.which("systemctl")
    if exe is None and not no_enable:
        fail(
            "systemctl not found (is this a systemd machine?): nothing was written; "
            "--no-enable writes the unit without enabling it"
        )
    home = Path(spec.home)
    _make_home(home, account)
    path = _unit_dir(mode, unit_dir) / UNIT_NAME
    _write(path, text, mode)
    print(f"  ExecStart={' '.join(spec.command)} daemon run")
    print(f"  IRONRT_HOME={home}")
    if spec.sandbox:
        print(f"  writable: {', '.join([str(home), *spec.read_write])} (see --read-write)")
    if not spec.private_tmp:
        print("  PrivateTmp=no: the home or a writable path is under /tmp, which it would hide")
    if spec.user == "root":
        print("  User=root: the daemon and every agent run as root (see --user-name)")
    flag = " --user" if mode == "user" else ""
    if exe is None:
        print(f"not enabled: systemctl{flag} daemon-reload && systemctl{flag} enable --now ironrt")
        return
    note = _running_daemon_note(home, mode)
    _systemctl(exe, mode, "daemon-reload")
    _systemctl(exe, mode, "enable", "--now", UNIT_NAME)
    print(f"status: systemctl{flag} status ironrt; log: {home / 'daemon.log'}")
    for extra in (note, _linger_note(account) if mode == "user" else None):
        if extra:
            print(f"note: {extra}")


@service_app.command()
def uninstall(system: SystemFlag = False, unit_dir: UnitDir = None) -> None:
    """Stop and disable the service and remove its unit (the agents keep running)."""
    mode: Mode = "system" if system else "user"
    path = _unit_dir(mode, unit_dir) / UNIT_NAME
    if not path.exists():
        print(f"no unit at {path}: nothing to uninstall")
        return
    _need_root(mode, unit_dir, "uninstall")
    exe = shutil.which("systemctl")
    if exe is not None:
        _systemctl(exe, mode, "disable", "--now", UNIT_NAME)
    try:
        path.unlink()
    except OSError as exc:
        fail(f"cannot remove {path}: {exc.strerror or exc}")
    print(f"removed {path}")
    if exe is not None:
        _systemctl(exe, mode, "daemon-reload")
    else:
        print("systemctl not found: only the file was removed")
    print(
        "the agents keep running: the next ironrt command starts a daemon that supervises "
        "them again"
    )


@service_app.command()
def show(
    system: SystemFlag = False,
    read_write: ReadWrite = None,
    user_name: UserName = None,
    no_sandbox: NoSandbox = False,
) -> None:
    """Print the unit `install` would write (same options)."""
    mode: Mode = "system" if system else "user"
    spec, _ = _spec(mode, read_write, user_name, no_sandbox)
    sys.stdout.write(_rendered(spec))
