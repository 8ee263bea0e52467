"""Watching an agent's log files from outside, as often as possible, for tests and
benchmarks of rotation: the promise is about *every moment* (no file over the limit, no
more than keep + 1 files, disk use within (keep + 1) x limit), so it is checked by
sampling while a writer runs, not once at the end."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from ironrt.supervisor import logfiles


class LogSampler:
    """A thread that stats the live file and every rotated name (one past `keep`, to
    catch a file too many) about every millisecond, keeping the worst it saw."""

    def __init__(self, path: Path, keep: int) -> None:
        self.names = [path, *logfiles.rotated(path, keep + 1)]
        self.samples = 0
        self.largest = 0
        self.peak_total = 0
        self.peak_blocks = 0
        self.most_files = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LogSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def violations(self, max_bytes: int, keep: int) -> list[str]:
        """What broke the rotation's promise at some sample (empty when nothing did)."""
        found = []
        if self.largest > max_bytes:
            found.append(f"a file reached {self.largest} bytes (limit {max_bytes})")
        if self.most_files > keep + 1:
            found.append(f"{self.most_files} files at once (keep={keep})")
        if self.peak_total > (keep + 1) * max_bytes:
            found.append(f"{self.peak_total} bytes in all (limit {(keep + 1) * max_bytes})")
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            stats = []
            for name in self.names:
                with contextlib.suppress(FileNotFoundError):
                    stats.append(os.stat(name))
            if not stats:
                continue
            self.samples += 1
            self.most_files = max(self.most_files, len(stats))
            self.largest = max([self.largest, *(s.st_size for s in stats)])
            self.peak_total = max(self.peak_total, sum(s.st_size for s in stats))
            self.peak_blocks = max(self.peak_blocks, sum(s.st_blocks * 512 for s in stats))
