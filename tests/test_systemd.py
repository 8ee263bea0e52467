"""systemd integration: the notify protocol spoken by a real daemon to a socket the test
binds (as systemd would), and `ironrt service` driving a fake `systemctl`."""

from __future__ import annotations

import grp
import itertools
import json
import logging
import os
import pwd
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest

import ironrt
from ironrt.client import Runtime
from ironrt.sdnotify import Notifier
from ironrt.service_unit import example, render
from ironrt.tempdaemon import TempDaemon, wait_until

REPO = Path(__file__).resolve().parents[1]
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


# ---- a fake service manager --------------------------------------------------------------


@dataclass
class Probe:
    """What answered at the instant READY=1 arrived."""

    control: bool = False
    router_status: str = ""
    error: str = ""


@dataclass
class ServiceManager:
    """Receives notifications on a datagram socket, as systemd does; probes both of the
    daemon's sockets the moment READY=1 arrives."""

    home: Path
    sock: socket.socket
    messages: list[tuple[float, str]] = field(default_factory=list)
    #: The sender of each message, as the kernel tells it (systemd checks it against the
    #: unit's main pid for NotifyAccess=main).
    senders: set[int] = field(default_factory=set)
    probe: Probe | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        self.sock.settimeout(0.05)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        ucred = struct.calcsize("3i")
        while not self._stop.is_set():
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(ucred))
            except TimeoutError:
                continue
            for level, kind, creds in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                    self.senders.add(struct.unpack("3i", creds[:ucred])[0])
            text = data.decode()
            self.messages.append((time.monotonic(), text))
            if "READY=1" in text.splitlines() and self.probe is None:
                self.probe = self._probe()

    def _probe(self) -> Probe:
        probe = Probe()
        try:
            rt = Runtime(home=self.home, autostart=False, timeout=1)
            url = urlsplit(rt.health().router_url)
            probe.control = True
            with socket.create_connection((url.hostname, url.port), timeout=1) as conn:
                conn.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                probe.router_status = conn.recv(64).decode(errors="replace").split("\r\n")[0]
        except Exception as exc:
            probe.error = repr(exc)
        return probe

    def lines(self, key: str) -> list[float]:
        return [t for t, text in self.messages if key in text.splitlines()]

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture(scope="module")
def managed() -> Iterator[tuple[TempDaemon, ServiceManager]]:
    folder = Path(tempfile.mkdtemp(prefix="irt-sd-", dir="/tmp"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(folder / "notify"))
    env = {"NOTIFY_SOCKET": str(folder / "notify"), "WATCHDOG_USEC": "400000"}
    d = TempDaemon(env=env)
    manager = ServiceManager(d.home, sock)
    thread = threading.Thread(target=manager.run, daemon=True)
    thread.start()
    try:
        with d:
            yield d, manager
    finally:
        manager.stop()
        thread.join(5)
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_ready_only_once_both_sockets_answer(managed: tuple[TempDaemon, ServiceManager]) -> None:
    d, manager = managed
    wait_until(lambda: manager.probe is not None, timeout=10)
    probe = manager.probe
    assert probe is not None
    assert probe.error == "" and probe.control, probe
    assert probe.router_status.startswith("HTTP/1.1 "), probe
    assert len(manager.lines("READY=1")) == 1
    ready = next(text for _, text in manager.messages if "READY=1" in text)
    # Only the daemon itself speaks (it is the unit's main process): NotifyAccess=main.
    assert d.proc is not None and manager.senders == {d.proc.pid}
    assert "STATUS=0 agents running; router on http://127.0.0.1:" in ready


def test_watchdog_pings_from_the_loop(managed: tuple[TempDaemon, ServiceManager]) -> None:
    _, manager = managed
    wait_until(lambda: len(manager.lines("WATCHDOG=1")) >= 3, timeout=10)
    pings = manager.lines("WATCHDOG=1")
    # Every half of WATCHDOG_USEC (0.2 s): not a flood, not a single ping.
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert min(gaps) > 0.1, gaps


def test_agents_never_get_the_notify_variables(
    managed: tuple[TempDaemon, ServiceManager], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, _ = managed
    # The caller itself runs in a unit (a script started by systemd): its variables
    # must not reach the agent either, or the agent could speak for that unit.
    for name, value in zip(NOTIFY_VARIABLES, ("/run/x/notify", "1000000", "1"), strict=True):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IRT_CANARY", "from-caller")  # the caller's environment does arrive
    script = tmp_path / "envdump.py"
    script.write_text("import json, os, sys\njson.dump(dict(os.environ), open(sys.argv[1], 'w'))\n")
    out = tmp_path / "env.json"
    agent_id = d.rt.start_agent(str(script), [str(out)], cwd=str(tmp_path))
    assert d.rt.wait(agent_id, timeout=20).exit_code == 0
    env = json.loads(out.read_text())
    assert env["IRONRT_AGENT_ID"] == agent_id and env["IRT_CANARY"] == "from-caller"
    assert not [name for name in NOTIFY_VARIABLES if name in env]
    # Nor does the log relay, the daemon's other child (it inherits the daemon's own).
    relays = d._relays()
    assert relays
    for relay in relays:
        assert not [name for name in NOTIFY_VARIABLES if name in relay.environ()]


def test_stopping_is_announced(managed: tuple[TempDaemon, ServiceManager]) -> None:
    d, manager = managed
    assert manager.lines("STOPPING=1") == []
    d.stop()
    wait_until(lambda: manager.lines("STOPPING=1"), timeout=10)
    assert manager.lines("STOPPING=1")[0] > manager.lines("READY=1")[0]


# ---- the notifier alone -------------------------------------------------------------------


def test_notifier_reads_and_removes_the_variables() -> None:
    env = {"NOTIFY_SOCKET": "@irt-x", "WATCHDOG_USEC": "400000", "WATCHDOG_PID": "42", "A": "b"}
    n = Notifier.from_environ(env, pid=42)
    assert env == {"A": "b"}
    assert n.address == "\0irt-x" and n.watchdog_interval == pytest.approx(0.2)
    # WATCHDOG_PID names another process (we were forked from it): no watchdog for us.
    other = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "400000", "WATCHDOG_PID": "42"}
    assert Notifier.from_environ(other, pid=43).watchdog_interval is None
    unset = Notifier.from_environ({}, pid=42)
    assert not unset.enabled and unset.watchdog_interval is None
    assert unset.ready("x") is False  # a no-op, not an error


def test_notifier_abstract_address_and_one_logged_failure(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    name = f"irt-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        n = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}, pid=1)
        assert n.ready("3 agents running")
        assert sock.recv(4096) == b"READY=1\nSTATUS=3 agents running"
        n.close()
    gone = Notifier(str(tmp_path / "no-such-socket"))
    with caplog.at_level(logging.WARNING, logger="ironrt.daemon"):
        assert gone.notify("WATCHDOG=1") is False
        assert gone.stopping() is False
    gone.close()
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1


async def test_a_stalled_loop_stops_the_pings() -> None:
    """The pings come from the event loop: a blocked loop sends none (a thread would)."""
    name = f"irt-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        n = Notifier("\0" + name, watchdog_interval=0.02)
        async with anyio.create_task_group() as tg:
            tg.start_soon(n.run, lambda: "ok")
            with anyio.fail_after(5):
                while not _drain(sock):
                    await anyio.sleep(0.01)
            threading.Event().wait(0.3)  # the loop is stuck here, on purpose
            stalled = _drain(sock)
            with anyio.fail_after(5):
                while not _drain(sock):
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        n.close()
    assert stalled == [], "pings were sent while the event loop was blocked"


def _drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(4096))
        except BlockingIOError:
            return got


# ---- `ironrt service` ---------------------------------------------------------------------

FAKE_SYSTEMCTL = """\
#!/bin/sh
printf '%s\\n' "$*" >> "$SYSTEMCTL_LOG"
if [ -n "$SYSTEMCTL_FAIL" ]; then echo "$SYSTEMCTL_FAIL" >&2; exit 1; fi
exit 0
"""


def _ironrt() -> list[str]:
    """The console script next to this Python, as a user runs it; else `python -m`."""
    script = Path(sys.executable).parent / "ironrt"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "ironrt"]


@dataclass
class Host:
    tmp: Path
    env: dict[str, str]

    @property
    def unit(self) -> Path:
        return self.tmp / "config" / "systemd" / "user" / "ironrt.service"

    def calls(self) -> list[str]:
        log = self.tmp / "systemctl.log"
        return log.read_text().splitlines() if log.exists() else []

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_ironrt(), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def host(tmp_path: Path) -> Host:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRONRT_", "XDG_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        IRONRT_HOME=str(tmp_path / "home"),
        IRONRT_NO_AUTOSTART="1",
        SYSTEMCTL_LOG=str(tmp_path / "systemctl.log"),
    )
    return Host(tmp_path, env)


def parse_unit(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done
    err = done.stderr.strip()
    assert err.startswith("ironrt: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_install_writes_the_real_paths_and_enables(host: Host) -> None:
    work = host.tmp / "work"
    work.mkdir()
    done = host.run("service", "install", "--user", "--read-write", str(work))
    assert done.returncode == 0, done.stderr
    assert host.calls() == ["--user daemon-reload", "--user enable --now ironrt.service"]
    assert f"wrote {host.unit}" in done.stdout and "loginctl enable-linger" in done.stdout
    unit = parse_unit(host.unit.read_text())
    home = host.tmp / "home"
    assert home.is_dir() and (home.stat().st_mode & 0o777) == 0o700
    program, *rest = unit["ExecStart"][0].split()
    assert program == _ironrt()[0] and os.access(program, os.X_OK)
    assert rest[-2:] == ["daemon", "run"]
    assert unit["Environment"] == [f"IRONRT_HOME={home}"]
    assert unit["ReadWritePaths"] == [str(home), str(work)]
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["KillMode"] == ["process"] and unit["Restart"] == ["on-failure"]
    assert int(unit["WatchdogSec"][0]) > 0 and int(unit["TimeoutStartSec"][0]) > 0
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    families = unit["RestrictAddressFamilies"][0].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    assert unit["PrivateTmp"] == ["no"]  # the home is under /tmp, which a private one hides
    assert unit["UMask"] == ["0077"] and unit["WantedBy"] == ["default.target"]
    # A source checkout links its guide; an installed wheel has none to link.
    guide = Path(ironrt.__file__).resolve().parents[1] / "docs" / "service.md"
    assert unit.get("Documentation", []) == ([guide.as_uri()] if guide.is_file() else [])
    _verify(host.unit, user=True, runtime_dir=host.tmp / "run")

    done = host.run("service", "uninstall", "--user")
    assert done.returncode == 0, done.stderr
    assert not host.unit.exists()
    assert host.calls()[2:] == ["--user disable --now ironrt.service", "--user daemon-reload"]


def test_show_prints_without_writing(host: Host) -> None:
    done = host.run("service", "show", IRONRT_HOME="/srv/irt-not-created")
    assert done.returncode == 0, done.stderr
    unit = parse_unit(done.stdout)
    assert unit["PrivateTmp"] == ["yes"] and unit["ReadWritePaths"] == ["/srv/irt-not-created"]
    assert not Path("/srv/irt-not-created").exists() and not host.unit.exists()
    assert host.calls() == []

    env = {k: v for k, v in host.env.items() if k != "IRONRT_HOME"}
    done = subprocess.run(
        [*_ironrt(), "service", "install", "--system", "--user-name", "nobody", "--print"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    unit = parse_unit(done.stdout)
    nobody = pwd.getpwnam("nobody")
    assert unit["User"] == ["nobody"] and unit["WantedBy"] == ["multi-user.target"]
    assert unit["Environment"] == [f"IRONRT_HOME={nobody.pw_dir}/.local/state/ironrt"]
    assert unit["Group"] == [grp.getgrgid(nobody.pw_gid).gr_name]


def test_systemctl_missing_or_failing_is_one_line(host: Host) -> None:
    err = one_line_error(host.run("service", "install", "--user", PATH=str(host.tmp)))
    assert "systemctl not found" in err and "--no-enable" in err
    assert not host.unit.exists()

    err = one_line_error(
        host.run("service", "install", "--user", SYSTEMCTL_FAIL="Failed to connect to bus: no")
    )
    assert err == (
        "ironrt: `systemctl --user daemon-reload` failed (exit 1): Failed to connect to bus: no"
    )

    err = one_line_error(host.run("service", "install", "--read-write", str(host.tmp / "nope")))
    assert "--read-write" in err and "no such file or folder" in err


def test_unwritable_unit_folder_is_one_line(host: Host) -> None:
    blocker = host.tmp / "a-file"
    blocker.write_text("")
    err = one_line_error(
        host.run("service", "install", "--system", "--no-enable", "--unit-dir", str(blocker / "x"))
    )
    assert err.startswith(f"ironrt: cannot write {blocker}/x/ironrt.service: ")


@pytest.mark.skipif(
    os.geteuid() == 0, reason="runs as root, for whom --system is allowed: nothing to refuse"
)
def test_system_without_root_is_refused(host: Host) -> None:
    err = one_line_error(host.run("service", "install", "--system"))
    assert "run it as root" in err and "--user" in err
    assert host.calls() == []


def test_example_unit_is_the_rendered_definition() -> None:
    """systemd/ironrt.service is generated: `python -m ironrt.service_unit > it`."""
    assert (REPO / "systemd" / "ironrt.service").read_text() == render(example())


def _verify(unit: Path, *, user: bool, runtime_dir: Path) -> None:
    """systemd's own parser: unknown keys, bad quoting, a missing ExecStart program."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # not a systemd host; the parsed assertions above still hold
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    done = subprocess.run(
        [analyze, *(["--user"] if user else []), "verify", str(unit)],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0 and "ignoring" not in said and "Unknown" not in said, said


def test_quoting_survives_systemds_parser(tmp_path: Path) -> None:
    """Paths with spaces, `%` and `$` come back from systemd as written."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    from ironrt.service_unit import UnitSpec

    odd = tmp_path / "a b%c$d"
    odd.mkdir()
    program = odd / "ironrt"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    unit = tmp_path / "ironrt.service"
    spec = UnitSpec(command=(str(program), "-x", "$HOME"), home=str(odd), read_write=(str(odd),))
    unit.write_text(render(spec))
    # Unquoted, the program would be split at the space (systemd: `.../a` is not
    # executable) and the home would be a relative path ("not absolute, ignoring").
    _verify(unit, user=True, runtime_dir=tmp_path / "run")


STARTING_SYSTEMCTL = """\
#!/bin/sh
printf '%s\\n' "$*" >> "$SYSTEMCTL_LOG"
if [ -n "$SYSTEMCTL_FAIL" ]; then echo "$SYSTEMCTL_FAIL" >&2; exit 1; fi
case "$*" in
  *"start ironrt.service") setsid "$IRONRT_TEST_PYTHON" -m ironrt.daemon \\
      </dev/null >/dev/null 2>&1 & ;;
esac
exit 0
"""


def test_autostart_goes_through_the_installed_service(host: Host) -> None:
    """With a unit installed for the home, a client that finds no daemon asks systemd to
    start the service, instead of starting a daemon outside it (no watchdog, no sandbox,
    and a locked home the service could no longer start on)."""
    assert host.run("service", "install", "--user", "--no-enable").returncode == 0
    (host.tmp / "bin" / "systemctl").write_text(STARTING_SYSTEMCTL)
    home = host.tmp / "home"
    rt = Runtime(home=home, autostart=False, timeout=10)
    auto = {"IRONRT_NO_AUTOSTART": "0", "IRONRT_TEST_PYTHON": sys.executable}

    refused = host.run("ps", SYSTEMCTL_FAIL="Unit ironrt.service is masked.", **auto)
    err = one_line_error(refused)
    assert "`systemctl --user start ironrt` failed: Unit ironrt.service is masked." in err
    assert not rt.ping()  # no daemon was started behind the service's back

    try:
        done = host.run("ps", **auto)
        assert done.returncode == 0, done.stderr
        assert host.calls()[-1] == "--user start ironrt.service"
        assert rt.ping()
    finally:
        if rt.ping():
            rt.shutdown_daemon()
