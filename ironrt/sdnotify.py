"""Telling systemd how the daemon is doing (`Type=notify`): ready, alive, stopping.

The protocol is one datagram per message on the AF_UNIX socket named by `NOTIFY_SOCKET`
(`@name` is an abstract address), newline-separated `KEY=VALUE` lines. It is small enough
that a dependency (or libsystemd) would cost more than it gives.

Rules this module keeps, because the daemon's safety depends on them:
- It never raises into the daemon: without `NOTIFY_SOCKET` every call is a no-op, and a
  failed send is logged once (systemd may simply be gone; supervising agents matters more).
- The watchdog pings come from a task of the daemon's own event loop, never from a
  thread: a loop stalled by CPU-bound work or a deadlock stops pinging, and systemd
  restarts the daemon (`WatchdogSec=`). That is the point of the watchdog.
- The variables are taken out of the environment when read (as `sd_notify(3)` does with
  `unset_environment`), so no child (agents, the log relay) inherits them and talks to
  the service manager in the daemon's name.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, MutableMapping

import anyio

log = logging.getLogger("ironrt.daemon")

#: The service manager's variables. Read by the daemon alone: no child may inherit them.
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

#: Without a watchdog, how often STATUS= is refreshed (seconds).
STATUS_INTERVAL = 5.0


def _address(raw: str) -> str | None:
    """The socket address for `NOTIFY_SOCKET`: a path, or `@name` for an abstract one."""
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None  # e.g. `vsock:` addresses (systemd >= 253): not for a local daemon


def _watchdog_interval(environ: MutableMapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises),
    or None when no watchdog is asked of this very process."""
    raw_pid = environ.get("WATCHDOG_PID", "").strip()
    if raw_pid and raw_pid != str(pid):
        return None  # meant for another process (we were forked or exec'd by it)
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    # Floored, so that an absurd WATCHDOG_USEC=1 cannot turn the task into a busy loop.
    return max(usec / 2e6, 0.01) if usec > 0 else None


class Notifier:
    """One service manager connection; inert when `address` is None."""

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self.address = address
        self.watchdog_interval = watchdog_interval if address else None
        self._sock: socket.socket | None = None
        self._failed = False
        self._status_failed = False

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, pid: int | None = None
    ) -> Notifier:
        """Read (and remove) the service manager's variables from `environ`."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = _address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%r is not a socket path: systemd is not notified", raw)
        interval = _watchdog_interval(env, os.getpid() if pid is None else pid)
        for name in NOTIFY_VARIABLES:
            env.pop(name, None)
        return cls(address, interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send one message; True if it was sent. Never raises."""
        if self.address is None:
            return False
        message = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)  # a full queue must never stall the loop
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning(
                    "cannot notify systemd (%s): %s; further failures are not logged",
                    self.address.replace("\0", "@"),
                    exc,
                )
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    async def run(self, status: Callable[[], str] | None = None) -> None:
        """Ping the watchdog every half interval and keep STATUS= current, until cancelled.

        Runs as a task of the daemon's loop: if the loop stalls, the pings stop."""
        if self.address is None or (self.watchdog_interval is None and status is None):
            return
        last = ""
        while True:
            lines = ["WATCHDOG=1"] if self.watchdog_interval is not None else []
            text = self.status_text(status)
            if text and text != last:
                lines.append(f"STATUS={text}")
                last = text
            if lines:
                self.notify(*lines)
            await anyio.sleep(self.watchdog_interval or STATUS_INTERVAL)

    def status_text(self, status: Callable[[], str] | None) -> str:
        """The status line, or "" if it cannot be made: a status is never worth the
        watchdog's pings (nor the daemon)."""
        if status is None:
            return ""
        try:
            return status()
        except Exception:
            if not self._status_failed:
                self._status_failed = True
                log.exception("cannot describe the daemon's status for systemd")
            return ""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
