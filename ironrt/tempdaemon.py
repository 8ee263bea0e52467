"""A real ironrt daemon in a throw-away home, for tests (ours and users').

    with TempDaemon() as d:
        agent_id = d.rt.start_agent("agent.py", budget=1.0)
        d.cli("ps", "--json")

It runs `python -m ironrt.daemon` as a separate process (the same code path as `ironrt
daemon start`), offline by default, on a router port picked for this home, and on exit
stops the daemon and every agent it started, even if the test killed the daemon.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import psutil

from ironrt.client import Runtime

_START_TIMEOUT_S = 20.0


class TempDaemon:
    def __init__(
        self,
        *,
        offline: bool = True,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        """`python`: the interpreter that runs the daemon (default: this one). It must
        import the same ironrt; benchmarks use it to compare CPython builds."""
        self.python = python or sys.executable
        # Unix socket paths are limited to ~107 bytes: keep the home short.
        self.home = Path(tempfile.mkdtemp(prefix="irt-", dir="/tmp"))
        self.env = {
            **os.environ,
            "IRONRT_HOME": str(self.home),
            "IRONRT_ROUTER_PORT": "0",
            "IRONRT_OFFLINE": "1" if offline else "0",
            "IRONRT_RESTART_BACKOFF": "0.05",
            "IRONRT_SAMPLE_INTERVAL": "0.2",
            "IRONRT_NO_AUTOSTART": "1",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.rt = Runtime(home=self.home, autostart=False, timeout=30)

    @property
    def router_url(self) -> str:
        return self.rt.health().router_url

    def start(self) -> TempDaemon:
        err = open(self.home / "daemon.err", "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [self.python, "-m", "ironrt.daemon"],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        finally:
            err.close()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.rt.ping():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.02)
        raise RuntimeError(f"daemon did not answer within {_START_TIMEOUT_S}s: {self.stderr()}")

    def stderr(self) -> str:
        try:
            return (self.home / "daemon.err").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def log(self) -> str:
        try:
            return (self.home / "daemon.log").read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the daemon (a crash): agents keep running."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def crash_host(self) -> None:
        """What a reboot does: the daemon, every agent's process group and the log relay
        all die at once (SIGKILL), and the database stays as it was."""
        groups = [a.pid for a in self.rt.list_agents() if a.pid and a.status.live]
        self.kill()
        for pgid in groups:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
        for proc in self._relays():
            with contextlib.suppress(psutil.Error):
                proc.kill()
                proc.wait(5)
        for pgid in groups:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pgid).wait(5)

    def _relays(self) -> list[psutil.Process]:
        """This home's log relay process (an independent process; see logrelay.py)."""
        sock = str(self.home / "logrelay.sock")
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            if sock in (proc.info.get("cmdline") or []):
                found.append(proc)
        return found

    def cli(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ironrt", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def stop(self) -> None:
        pids: list[int] = []
        with contextlib.suppress(Exception):
            pids = [a.pid for a in self.rt.list_agents() if a.pid and a.status.live]
        try:
            # Whichever daemon answers on this home: this one's, or one a command started
            # after the test killed it (a CLI call autostarts one).
            if self.rt.ping():
                self.rt.shutdown_daemon(keep_agents=False, wait=30)
        except Exception:
            pass
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
        for pid in pids:  # whatever a failed test left behind
            try:
                for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
                    p.kill()
            except psutil.Error:
                pass
        for relay in self._relays():  # it would leave by itself; tests do not wait for it
            with contextlib.suppress(psutil.Error):
                relay.terminate()

    def __enter__(self) -> TempDaemon:
        try:
            return self.start()
        except BaseException:
            # `__exit__` does not run when `__enter__` raises: clean up here, or every
            # failed start would leave its home (and maybe a process) behind.
            self.__exit__(None, None, None)
            raise

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll `predicate()` until it is truthy; AssertionError after `timeout` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
