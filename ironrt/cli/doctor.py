"""`ironrt doctor`: check the installation and the running daemon, one line per check.

It only observes: it never starts a daemon (a doctor that starts one hides the problem it
should report) and never prints a key, only which providers have one.
"""

from __future__ import annotations

import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import typer

from ironrt.cli.app import app
from ironrt.cli.context import runtime, settings
from ironrt.config import DEFAULT_ROUTER_PORT
from ironrt.protocol import LedgerStatus

Level = Literal["ok", "warn", "fail", "info"]
MARK: dict[Level, tuple[str, str]] = {
    "ok": ("✓", "green"),
    "warn": ("!", "yellow"),
    "fail": ("✗", "bold red"),
    "info": ("·", "dim"),
}


@dataclass(slots=True)
class Report:
    lines: list[tuple[Level, str]] = field(default_factory=list)

    def add(self, level: Level, text: str) -> None:
        self.lines.append((level, text))

    @property
    def failed(self) -> bool:
        return any(level == "fail" for level, _ in self.lines)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _check_private(report: Report, path: Path, what: str, want: int) -> None:
    """`want` is the strictest sensible mode; group or other bits beyond it fail."""
    mode = _mode(path)
    if mode & 0o077:
        report.add(
            "fail",
            f"{what} {path} is mode {mode:04o}, should be {want:04o} (chmod {want:o} {path})",
        )
    else:
        report.add("ok", f"{what} {path} is private ({mode:04o})")


def _reachable(url: str, timeout: float = 1.0) -> str | None:
    """None if a TCP connection to the URL's host and port succeeds, else why not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def diagnose() -> Report:
    report = Report()
    s = settings()
    if not s.home.is_dir():
        report.add("fail", f"home folder {s.home} does not exist (ironrt daemon start creates it)")
        return report
    _check_private(report, s.home, "home folder", 0o700)
    sock = s.socket_path
    if not sock.exists():
        report.add("fail", f"no socket at {sock}: the daemon is not running (ironrt daemon start)")
        return report
    if not stat.S_ISSOCK(sock.stat().st_mode):
        report.add("fail", f"{sock} is not a socket")
        return report
    _check_private(report, sock, "socket", 0o600)
    rt = runtime(autostart=False, timeout=5.0)
    try:
        h = rt.health()
    except Exception as exc:  # whatever went wrong, doctor reports it as a line
        report.add("fail", f"the daemon does not answer on {sock}: {exc}")
        return report
    report.add("ok", f"daemon answers: pid {h.pid}, version {h.version}, up {int(h.uptime_s)}s")
    if s.keys_path.exists():
        _check_private(report, s.keys_path, "keys file", 0o600)
    have = sorted(p for p, present in h.provider_keys.items() if present)
    missing = sorted(p for p, present in h.provider_keys.items() if not present)
    if h.offline:
        report.add("info", "offline mode: LLM calls are answered by the built-in offline provider")
    if have:
        report.add("ok", f"provider keys held by the daemon: {', '.join(have)}")
    elif not h.offline:
        report.add(
            "fail",
            "the daemon holds no provider key: export OPENAI_API_KEY / "
            f"ANTHROPIC_API_KEY before it starts, or write {s.keys_path}",
        )
    if missing and not h.offline:
        report.add("info", f"no key for: {', '.join(missing)}")
    why = _reachable(h.router_url)
    if why is None:
        report.add("ok", f"router reachable at {h.router_url}")
    else:
        report.add("fail", f"router at {h.router_url} is not reachable: {why}")
    port = urlsplit(h.router_url).port
    if s.router_port is None and port != DEFAULT_ROUTER_PORT:
        # Agents are told the URL, so this is no fault; but a user looking for the router
        # on 8741 (a firewall rule, a curl) should learn why it is elsewhere.
        report.add(
            "info",
            f"router on port {port}, not {DEFAULT_ROUTER_PORT}: that port was taken (another "
            "home's daemon?) so this home keeps its own; set IRONRT_ROUTER_PORT to choose",
        )
    for name, state in sorted(h.circuits.items()):
        if state == "closed":
            report.add("ok", f"circuit {name}: closed")
        elif state == "open":
            report.add(
                "fail",
                f"circuit {name}: open (the provider failed repeatedly; calls "
                "fail fast until it recovers)",
            )
        else:
            report.add("warn", f"circuit {name}: {state}")
    _telemetry(report, h.telemetry)
    _ledger(report, h.ledger)
    return report


def _ledger(report: Report, status: LedgerStatus | None) -> None:
    """The fleet ledger: shared scopes hold only while it answers (leases run out)."""
    if status is None:
        report.add("info", "fleet ledger: off (IRONRT_LEDGER_URL is not set; every scope is local)")
        return
    shared = ", ".join(status.shared_scopes) or "none yet"
    if status.state == "ok":
        report.add(
            "ok",
            f"fleet ledger: {status.url} answers (schema v{status.schema}, last sync "
            f"{status.synced_at}, {status.syncs} lease syncs; shared scopes: {shared}; "
            f"this daemon: {status.daemon_id})",
        )
    else:
        report.add(
            "fail",
            f"fleet ledger: {status.url} does not answer ({status.error}): calls of shared "
            f"scopes ({shared}) go on inside their leases, then get 503 ledger_unavailable",
        )


def _telemetry(report: Report, state: str) -> None:
    """Telemetry never affects agents, so a disabled one is a warning, never a failure."""
    if state == "enabled":
        report.add("ok", "Control Panel telemetry: enabled")
    elif state == "disabled":
        report.add(
            "warn",
            "Control Panel telemetry: disabled (3 failed attempts in a row; items stay "
            "queued and one batch is retried every IRONRT_TELEMETRY_REPROBE; see daemon.log)",
        )
    else:
        report.add("info", "Control Panel telemetry: off (IRONRT_TELEMETRY_URL is not set)")


@app.command("doctor")
def doctor() -> None:
    """Check the home folder, socket, daemon, keys, router and circuit breakers."""
    from rich.text import Text

    from ironrt.cli import render

    report = diagnose()
    out = render.console()
    for level, text in report.lines:
        mark, style = MARK[level]
        out.print(Text(f"{mark} ", style=style) + Text(text), soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)
