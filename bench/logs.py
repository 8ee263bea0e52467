"""Agent logs through the log relay: lossless, bounded, and how fast vs writing a file.

    python bench/logs.py                 # 10 s per run, 10 MiB x 3 rotated files (defaults)
    python bench/logs.py --quick         # 3 s per run
    python bench/logs.py --seconds 30 --max-size 1MiB --keep 5

One writer process writes numbered lines as fast as it can (batches of 200 lines per
write(2), as a chatty agent with a buffered stdout would), twice, in the same run:

1. Baseline: its stdout is a plain file opened O_APPEND (the old design, no rotation).
2. Relay: its stdout is a pipe from `LogRelay.pipe_for` (a real relay process, rotation by
   rename at the size limit).

A sampler thread stats every log file every ~1 ms during each run. Reported: lines written
vs lines found in the files kept, gaps and duplicates among them (both must be 0), the
largest file and the peak total disk use seen (must stay <= max and <= (keep+1) x max),
the files' modes (0600), throughput in MB/s with the relay as a ratio of the baseline,
and the relay's CPU time per MB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
import psutil
from _common import machine, ratio, table, write_results

from ironrt.supervisor import logfiles
from ironrt.supervisor.logrelay_client import LogRelay
from ironrt.supervisor.logsampler import LogSampler
from ironrt.values import DEFAULT_LOG_KEEP, parse_size

NAME = "logs"
MB = 1_000_000

#: Line k is "%010d " and k % PADS x's (92 bytes on average, like typical log lines).
PADS = 161
#: Numbered lines, 200 per write, for argv[1] seconds; then "END <count>".
WRITER = rf"""
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
pads = [b"x" * n for n in range({PADS})]
i = 0
while time.monotonic() < end:
    os.write(1, b"".join(b"%010d %s\n" % (k, pads[k % {PADS}]) for k in range(i, i + 200)))
    i += 200
os.write(1, b"END %d\n" % i)
"""


def bytes_of_lines(count: int) -> int:
    """Bytes of the first `count` numbered lines (12 + k % PADS each)."""
    cycles, rest = divmod(count, PADS)
    return count * 12 + cycles * sum(range(PADS)) + sum(range(rest))


def run_writer(stdout: int, seconds: float) -> float:
    """Run the writer on `stdout` (closed here); its wall time."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(seconds)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stdout,
        )
    finally:
        os.close(stdout)
    try:
        code = proc.wait(seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"the writer exited with {code}")
    return elapsed


def verify(path: Path, keep: int) -> dict[str, Any]:
    """Read the kept files back oldest first: the END count, the numbers found, gaps, dups."""
    files = [p for p in [*reversed(logfiles.rotated(path, keep)), path] if p.exists()]
    data = b"".join(p.read_bytes() for p in files)
    lines = data.split(b"\n")
    end = lines[-2] if len(lines) >= 2 and lines[-1] == b"" else b""
    written = int(end.split()[1]) if end.startswith(b"END ") else -1
    body = lines[:-2]
    # The oldest file kept may start with the end of a line begun in a file rotated out
    # (the relay writes what it reads at once, partial lines included): not a loss.
    partial_first = bool(body) and not _well_formed(body[0])
    body = body[1:] if partial_first else body
    numbers = [int(line[:10]) for line in body if line[:10].isdigit()]
    malformed = sum(1 for line in body if not _well_formed(line))
    first = numbers[0] if numbers else 0
    expected = range(first, written) if written >= 0 else range(0)
    seen = set(numbers)
    return {
        "files": [p.name for p in files],
        "modes": sorted({oct(p.stat().st_mode & 0o777) for p in files}),
        "sizes": [p.stat().st_size for p in files],
        "lines_written": written,
        "lines_found": len(numbers),
        "first_found": first,
        "gaps": sum(1 for k in expected if k not in seen),
        "duplicates": len(numbers) - len(seen),
        "malformed": malformed,
        "partial_first_line": partial_first,
        "ends_at_last_line": bool(numbers) and numbers[-1] == written - 1,
    }


def _well_formed(line: bytes) -> bool:
    head = line[:10]
    return head.isdigit() and line == b"%s %s" % (head, b"x" * (int(head) % PADS))


def wait_ended(path: Path, timeout: float) -> float:
    """Seconds until the END line is in the live file (the relay caught up)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        with contextlib.suppress(FileNotFoundError), path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 64))
            if b"END " in fh.read():
                return time.perf_counter() - t0
        time.sleep(0.005)
    raise RuntimeError(f"{path}: no END line after {timeout} s")


def baseline(workdir: Path, seconds: float, keep: int) -> dict[str, Any]:
    path = workdir / "baseline.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    with LogSampler(path, keep) as sampler:
        elapsed = run_writer(fd, seconds)
    out = verify(path, keep)
    out.update(_throughput(out["lines_written"], elapsed), peak_total=sampler.peak_total)
    out.update(largest=sampler.largest, samples=sampler.samples)
    path.unlink()
    return out


async def through_relay(workdir: Path, seconds: float, max_bytes: int, keep: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="irt-bl-", dir="/tmp"))  # short: a socket path
    relay = LogRelay(home / "logrelay.sock", workdir / "logrelay.err")
    try:
        await relay.start()
        assert relay.relay_pid is not None
        proc = psutil.Process(relay.relay_pid)
        cpu0 = sum(proc.cpu_times()[:2])
        path = workdir / "agent.log"
        fd = await relay.pipe_for("agent", path, max_bytes, keep)
        with LogSampler(path, keep) as sampler:
            elapsed = await anyio.to_thread.run_sync(run_writer, fd, seconds)
            drain = await anyio.to_thread.run_sync(wait_ended, path, 60.0)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
    finally:
        await relay.aclose()
        shutil.rmtree(home, ignore_errors=True)
    out = verify(path, keep)
    out.update(_throughput(out["lines_written"], elapsed), drain_after_exit_s=drain)
    out.update(largest=sampler.largest, peak_total=sampler.peak_total)
    out.update(peak_allocated=sampler.peak_blocks, most_files=sampler.most_files)
    out.update(samples=sampler.samples, relay_cpu_s=cpu)
    out["relay_cpu_ms_per_mb"] = cpu * 1000 / max(out["mb"], 1e-9)
    return out


def _throughput(lines: int, elapsed: float) -> dict[str, Any]:
    mb = bytes_of_lines(max(lines, 0)) / MB
    return {"mb": mb, "seconds": elapsed, "mb_per_s": mb / elapsed}


def report(r: dict[str, Any]) -> None:
    b, x = r["baseline"], r["relay"]
    limit, total_limit = r["max_bytes"], (r["keep"] + 1) * r["max_bytes"]
    print(
        table(
            f"Writer at full speed for {r['seconds']:.0f} s: plain file vs log relay "
            f"({r['max_bytes'] / 2**20:g} MiB x {r['keep']} rotated)",
            ["measure", "file (baseline)", "relay", "ratio"],
            [
                ["throughput MB/s", b["mb_per_s"], x["mb_per_s"], x["throughput_ratio"]],
                ["MB written", b["mb"], x["mb"], ratio(x["mb"], b["mb"])],
                ["lines written", b["lines_written"], x["lines_written"], float("nan")],
                ["lines found in the files", b["lines_found"], x["lines_found"], float("nan")],
                ["gaps among them", b["gaps"], x["gaps"], float("nan")],
                ["duplicates", b["duplicates"], x["duplicates"], float("nan")],
                ["malformed lines", b["malformed"], x["malformed"], float("nan")],
                ["largest file seen (bytes)", b["largest"], x["largest"], float("nan")],
                ["peak total disk use (bytes)", b["peak_total"], x["peak_total"], float("nan")],
                ["file modes", ",".join(b["modes"]), ",".join(x["modes"]), float("nan")],
            ],
        )
    )
    print()
    print(
        f"relay: {x['relay_cpu_s']:.2f} s CPU ({x['relay_cpu_ms_per_mb']:.2f} ms per MB), "
        f"caught up {x['drain_after_exit_s'] * 1000:.0f} ms after the writer exited, "
        f"{x['samples']} samples, at most {x['most_files']} files at once, peak allocated "
        f"{x['peak_allocated']:,} bytes"
    )
    print()
    checks = [
        (
            "no gap, no duplicate, no malformed line",
            not (x["gaps"] or x["duplicates"] or x["malformed"]),
        ),
        ("the files end at the last line written", x["ends_at_last_line"]),
        (f"no file over {limit:,} bytes", x["largest"] <= limit),
        (f"total never over {total_limit:,} bytes", x["peak_total"] <= total_limit),
        ("every file 0600", x["modes"] == ["0o600"]),
    ]
    print("Checks")
    print("------")
    for label, ok in checks:
        print(f"{label}: {'PASS' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=None, help="per run (default 10)")
    ap.add_argument("--quick", action="store_true", help="3 s per run")
    ap.add_argument("--max-size", default="10MiB", help="log file limit (default 10MiB)")
    ap.add_argument("--keep", type=int, default=DEFAULT_LOG_KEEP, help="rotated files kept")
    args = ap.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    max_bytes = parse_size(args.max_size)

    results: dict[str, Any] = {
        "machine": machine(),
        "seconds": seconds,
        "max_bytes": max_bytes,
        "keep": args.keep,
    }
    workdir = Path(tempfile.mkdtemp(prefix="irt-bench-logs-"))
    try:
        results["baseline"] = baseline(workdir, seconds, args.keep)
        results["relay"] = anyio.run(through_relay, workdir, seconds, max_bytes, args.keep)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    relay = results["relay"]
    relay["throughput_ratio"] = ratio(relay["mb_per_s"], results["baseline"]["mb_per_s"])

    report(results)
    path = write_results(NAME, results)
    print(f"\nJSON: {path}")
    ok = not (relay["gaps"] or relay["duplicates"] or relay["malformed"])
    ok = ok and relay["largest"] <= max_bytes and relay["ends_at_last_line"]
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the temp files
    sys.exit(main())
