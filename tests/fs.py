"""A small filesystem of its own, to fill to the last byte: full-disk tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironrt.tempdaemon import TempDaemon


@contextlib.contextmanager
def small_filesystem(size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "4m"), mounted for the block; skips where mounting is not
    allowed (not root, no tmpfs)."""
    where = Path(tempfile.mkdtemp(prefix="irt-fs-", dir="/tmp"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def fill(path: Path) -> None:
    """Write zeros to `path` until the filesystem refuses another byte."""
    with contextlib.suppress(OSError), path.open("wb") as fh:  # even open may find it full
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())


def daemon_on(fs: Path) -> TempDaemon:
    """An offline TempDaemon (not started) whose home is on the filesystem `fs`."""
    from ironrt.client import Runtime

    d = TempDaemon(offline=True)
    d.home.rmdir()
    d.home = fs / "home"
    d.env["IRONRT_HOME"] = str(d.home)
    d.home.mkdir(mode=0o700)
    d.rt = Runtime(home=d.home, autostart=False, timeout=30)
    return d
