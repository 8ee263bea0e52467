"""The log relay: lossless, size-bounded agent logs that survive the death of either side.

Everything runs through a real relay process and real writer processes (`python -c`):
a writer's output is numbered lines, so the files read back oldest to newest must be a
contiguous run of numbers ending at the writer's END line: no gap, no duplicate.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from ironrt.supervisor import logfiles
from ironrt.supervisor.logfiles import Follower, Position, tail_lines
from ironrt.supervisor.logrelay_client import LogRelay
from ironrt.supervisor.logsampler import LogSampler
from ironrt.supervisor.logwire import MAX_FDS_PER_MESSAGE, Framer, encode
from ironrt.supervisor.logwriter import LogWriter
from tests.fs import fill, small_filesystem

RELAY_SCRIPT = Path(__file__).resolve().parents[2] / "ironrt" / "supervisor" / "logrelay.py"

#: Numbered lines, in batches of up to 200 per write. Config (JSON in argv[1]): `seconds`
#: or `lines` to stop, `pace` (sleep between batches), `gate_at` + `gate` (after that many
#: lines, wait until the file `gate` exists). Ends with "END <count>".
WRITER = r"""
import json, os, sys, time
cfg = json.loads(sys.argv[1])
end = time.monotonic() + cfg.get("seconds", 1e9)
limit = cfg.get("lines", 1 << 62)
pace = cfg.get("pace", 0.0)
gate_at, gate = cfg.get("gate_at", -1), cfg.get("gate")
pad = b"x" * 40
i = 0
while i < limit and time.monotonic() < end:
    if i == gate_at:
        while not os.path.exists(gate):
            time.sleep(0.005)
    n = min(200, limit - i, gate_at - i if gate_at > i else 200)
    os.write(1, b"".join(b"%010d %s\n" % (k, pad[: k % 41]) for k in range(i, i + n)))
    i += n
    if pace:
        time.sleep(pace)
os.write(1, b"END %d\n" % i)
"""

#: A daemon stand-in: attaches one pipe, starts a writer on it, prints both pids, waits.
CLIENT = r"""
import os, subprocess, sys
from pathlib import Path
from typing import Any
import anyio
from ironrt.supervisor.logrelay_client import LogRelay

async def main():
    relay = LogRelay(Path(sys.argv[1]), Path(sys.argv[2]))
    await relay.start()
    fd = await relay.pipe_for("a1", Path(sys.argv[3]), 1 << 20, 3)
    writer = subprocess.Popen([sys.executable, "-c", sys.argv[4], sys.argv[5]], stdout=fd, stderr=fd)
    os.close(fd)
    print(writer.pid, relay.relay_pid, flush=True)
    await anyio.sleep(60)

anyio.run(main)
"""


# ---- helpers -------------------------------------------------------------------------------


@pytest.fixture
def home() -> Iterator[Path]:
    """A short path (Unix socket paths are limited to 108 bytes) with a logs folder."""
    where = Path(tempfile.mkdtemp(prefix="irt-lr-", dir="/tmp"))
    (where / "logs").mkdir()
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


@contextlib.asynccontextmanager
async def relay_client(home: Path) -> AsyncIterator[LogRelay]:
    client = LogRelay(home / "logrelay.sock", home / "logrelay.err")
    await client.start()
    try:
        yield client
    finally:
        await client.aclose()


def spawn(argv: list[str], stdout: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout)


def spawn_writer(fd: int, **cfg: object) -> subprocess.Popen[bytes]:
    """A writer whose stdout and stderr are `fd` (closed here: the child has it)."""
    try:
        return subprocess.Popen(
            [sys.executable, "-c", WRITER, json.dumps(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
        )
    finally:
        os.close(fd)


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def files_of(path: Path, keep: int) -> list[Path]:
    """The log's files that exist, oldest first."""
    return [p for p in [*reversed(logfiles.rotated(path, keep)), path] if p.exists()]


def read_back(path: Path, keep: int) -> bytes:
    return b"".join(p.read_bytes() for p in files_of(path, keep))


def ended(path: Path) -> bool:
    return b"END " in tail_of(path)[-40:]


def well_formed(line: bytes) -> bool:
    head = line[:10]
    return head.isdigit() and line == b"%s %s" % (head, b"x" * (int(head) % 41))


def check_numbered(data: bytes) -> tuple[int, int]:
    """(first, count): asserts the lines are exactly first..count-1, then END count."""
    lines = data.split(b"\n")
    assert lines[-1] == b"", "the log does not end with a newline"
    assert lines[-2].startswith(b"END "), lines[-2][:80]
    count = int(lines[-2].split()[1])
    body = lines[:-2]
    if body and not well_formed(body[0]):
        # The oldest file kept may start with the end of a line whose beginning was in a
        # file rotated out: the relay writes what it reads at once, partial line included.
        body = body[1:]
    assert body, "no numbered line"
    first = int(body[0][:10])
    for k, line in enumerate(body, start=first):
        assert line == b"%010d %s" % (k, b"x" * (k % 41)), f"line {k} is {line[:60]!r}"
    assert first + len(body) == count, f"{count - first - len(body)} lines missing at the end"
    return first, count


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout} s: {what}")
        await anyio.sleep(0.02)


def tail_of(path: Path) -> bytes:
    try:
        return path.read_bytes()[-200:]
    except FileNotFoundError:
        return b""


async def wait_proc(proc: subprocess.Popen[bytes], timeout: float) -> int:
    return await anyio.to_thread.run_sync(lambda: proc.wait(timeout))


# ---- through the relay --------------------------------------------------------------------


async def test_full_speed_writer_never_exceeds_the_limits_and_loses_nothing(home: Path) -> None:
    log, max_bytes, keep = home / "logs" / "a1.log", 64 * 1024, 3
    async with relay_client(home) as relay:
        fd = await relay.pipe_for("a1", log, max_bytes, keep)
        with LogSampler(log, keep) as sampler, reaped(spawn_writer(fd, seconds=3.0)) as w:
            assert await wait_proc(w, 20) == 0
            await wait_for(lambda: ended(log), 10, "the relay never wrote the END line")
        assert not sampler.violations(max_bytes, keep), sampler.violations(max_bytes, keep)
        assert sampler.samples > 20 and sampler.largest > max_bytes // 2
        first, count = check_numbered(read_back(log, keep))
        assert count > 10_000 and first > 0  # it rotated, and kept a contiguous suffix
        for path in files_of(log, keep):
            assert path.stat().st_mode & 0o777 == 0o600
            assert path.stat().st_size <= max_bytes
        assert len(files_of(log, keep)) == keep + 1


async def test_a_follower_reading_while_the_relay_rotates_sees_every_line_once(
    home: Path,
) -> None:
    """Hundreds of rotations a second under a follower polling as fast as it can: a file
    rotated between its last read and its check is still read to its end. (A follower more
    than `keep` files behind would lose the oldest, as `tail -F` does: 20 files give a
    thread starved on a loaded machine room to catch up.)"""
    log, max_bytes, keep = home / "logs" / "f.log", 16 * 1024, 20
    got = bytearray()
    stop = threading.Event()

    def follow() -> None:
        with Follower(log, Position(0, 0), keep=keep) as follower:
            while True:
                data = follower.read_new()
                got.extend(data)
                if not data:
                    if stop.is_set():  # set once END was written: nothing more comes
                        return
                    time.sleep(0.0005)

    async with relay_client(home) as relay:
        fd = await relay.pipe_for("f", log, max_bytes, keep)
        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        try:
            with reaped(spawn_writer(fd, seconds=1.0, pace=0.002)) as writer:
                assert await wait_proc(writer, 20) == 0
                await wait_for(lambda: ended(log), 10, "the relay never wrote the END line")
        finally:
            stop.set()
            reader.join(10)
    assert check_numbered(bytes(got))[0] == 0


async def test_a_killed_daemon_does_not_break_the_writer_and_a_new_one_adopts(
    home: Path,
) -> None:
    log = home / "logs" / "a1.log"
    cfg = json.dumps({"seconds": 2.5, "pace": 0.005})
    argv = [str(home / "logrelay.sock"), str(home / "logrelay.err"), str(log), WRITER, cfg]
    client = spawn([sys.executable, "-c", CLIENT, *argv], stdout=subprocess.PIPE)
    writer_pid = 0
    try:
        with reaped(client):
            assert client.stdout is not None
            with anyio.fail_after(20):
                line = await anyio.to_thread.run_sync(
                    client.stdout.readline, abandon_on_cancel=True
                )
            writer_pid, relay_pid = map(int, line.split())
            await wait_for(lambda: log.exists() and log.stat().st_size > 10_000, 10, "no output")
            client.send_signal(signal.SIGKILL)
            assert await wait_proc(client, 10) == -signal.SIGKILL
        size_at_kill = log.stat().st_size
        await wait_for(lambda: log.stat().st_size > size_at_kill + 10_000, 10, "writer stopped")
        async with relay_client(home) as relay:
            assert relay.relay_pid == relay_pid
            assert relay.held("a1") == ["a1:1"]  # it holds a duplicate of the pipe
            await wait_for(lambda: ended(log), 15, "the writer did not finish")
        first, count = check_numbered(read_back(log, 3))
        assert first == 0 and count > 1000
    finally:
        if writer_pid and not ended(log):
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer_pid, signal.SIGKILL)


async def test_a_killed_relay_is_replaced_and_the_pipe_buffer_loses_nothing(home: Path) -> None:
    """The relay is killed once it has written all it read: what the writer writes while no
    relay runs (more than the pipe holds: the writer blocks) reaches the new relay."""
    log, gate = home / "logs" / "a1.log", home / "go"
    async with relay_client(home) as relay, anyio.create_task_group() as tg:
        tg.start_soon(relay.watch)
        fd = await relay.pipe_for("a1", log, 1 << 20, 8)
        cfg = {"lines": 120_000, "gate_at": 10_000, "gate": str(gate)}
        with reaped(spawn_writer(fd, **cfg)) as writer:
            await wait_for(lambda: b"0000009999 " in tail_of(log), 10, "no output")
            old_pid = relay.relay_pid
            assert old_pid is not None
            os.kill(old_pid, signal.SIGKILL)
            gate.touch()
            await wait_for(lambda: relay.relay_pid not in (None, old_pid), 10, "not replaced")
            await wait_for(lambda: ended(log), 20, "the writer did not finish")
            assert await wait_proc(writer, 10) == 0  # never got EPIPE
        tg.cancel_scope.cancel()
    assert check_numbered(read_back(log, 8)) == (0, 120_000)


async def test_flushed_waits_for_a_slow_relay_and_gives_up_at_its_bound(home: Path) -> None:
    """After a writer ends, `flushed` says whether the relay has written all it wrote: not
    while the relay is frozen (False at the bound, the data still in the pipe), and once it
    runs again, True with the writer's last line in the file."""
    log = home / "logs" / "a1.log"
    async with relay_client(home) as relay:
        fd = await relay.pipe_for("a1", log, 1 << 22, 2)
        assert relay.relay_pid is not None
        os.kill(relay.relay_pid, signal.SIGSTOP)
        try:
            # 50,000 lines (~2.3 MB): more than the pipe holds, so the writer is still
            # blocked when the bound comes.
            with reaped(spawn_writer(fd, lines=50_000)) as writer:
                began = time.monotonic()
                assert not await relay.flushed("a1", 0.3)
                assert time.monotonic() - began < 5  # bounded (0.3 s asked)
                assert not ended(log)
        finally:
            os.kill(relay.relay_pid, signal.SIGCONT)
        # `reaped` killed the blocked writer; a second one runs to its end.
        fd = await relay.pipe_for("a1", log, 1 << 22, 2)
        with reaped(spawn_writer(fd, lines=20_000)) as writer:
            assert await wait_proc(writer, 20) == 0
        assert await relay.flushed("a1", 10)
        assert ended(log)  # at once: no waiting for the file after `flushed`


async def test_a_line_longer_than_a_file_is_split_without_loss(home: Path) -> None:
    log = home / "logs" / "long.log"
    data = b"a" * 2500 + b"\nshort\n"
    async with relay_client(home) as relay:
        fd = await relay.pipe_for("long", log, 1024, 5)
        script = f"import os; os.write(1, {data!r})"
        with reaped(spawn([sys.executable, "-c", script], stdout=fd)) as proc:
            os.close(fd)
            assert await wait_proc(proc, 20) == 0
        await wait_for(lambda: log.exists() and log.read_bytes().endswith(b"short\n"), 10, "")
    assert [p.stat().st_size for p in files_of(log, 5)] == [1024, 1024, 459]
    assert read_back(log, 5) == data


async def test_full_disk_holds_the_output_and_blocks_the_writer(home: Path) -> None:
    with small_filesystem("8m") as fs:
        log = fs / "a1.log"
        filler = fs / "filler"
        fill(filler)
        async with relay_client(home) as relay:
            fd = await relay.pipe_for("a1", log, 1 << 20, 5)
            with reaped(spawn_writer(fd, lines=100_000)) as writer:  # ~3.3 MB: > the pipe
                err = home / "logrelay.err"
                await wait_for(lambda: b"disk full" in err.read_bytes(), 10, "no disk full")
                await anyio.sleep(0.5)
                assert writer.poll() is None  # blocked on its full pipe, not failed
                filler.unlink()
                assert await wait_proc(writer, 20) == 0
                await wait_for(lambda: ended(log), 10, "the relay did not catch up")
            assert b"writing again" in err.read_bytes()
        assert check_numbered(read_back(log, 5)) == (0, 100_000)


# ---- the relay's protocol and lifetime, spoken by hand ------------------------------------


Reply = tuple[dict[str, Any], list[int]]


class Wire:
    """A raw client: one request, its reply lines (and their descriptors)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()  # not left for the collector to warn about in another test
            raise
        self.framer = Framer()
        self.pending: list[Reply] = []

    def ask(self, message: dict[str, Any], fds: list[int] | None = None) -> list[Reply]:
        data = encode(message)
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)
        replies: list[Reply] = []
        while True:
            while not self.pending:
                got, fds_in, _, _ = socket.recv_fds(self.sock, 65536, MAX_FDS_PER_MESSAGE + 3)
                assert got, "the relay closed the connection"
                self.pending.extend(self.framer.feed(got, fds_in))
            replies.append(self.pending.pop(0))
            if not replies[-1][0].get("more"):
                return replies

    def close(self) -> None:
        self.sock.close()


def accepts(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(sock))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


@contextlib.contextmanager
def relay_process(sock: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-I", str(RELAY_SCRIPT), str(sock)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        # Until it accepts: the socket file exists from `bind`, a moment before `listen`
        # (a connect in between is refused: a flake CI hit).
        deadline = time.monotonic() + 10
        while not accepts(sock):
            assert proc.poll() is None and time.monotonic() < deadline, "relay did not start"
            time.sleep(0.01)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_protocol_batches_and_errors(home: Path) -> None:
    sock, log = home / "r.sock", home / "logs" / "x.log"
    with relay_process(sock) as proc:
        assert sock.stat().st_mode & 0o777 == 0o600
        wire = Wire(sock)
        try:
            assert wire.ask({"op": "ping"})[0][0] == {"ok": True, "pid": proc.pid}
            assert not wire.ask({"op": "nope"})[0][0]["ok"]
            r, w = os.pipe()
            bad = {"op": "attach", "stream": "x:1", "path": "relative", "max_bytes": 1, "keep": 1}
            assert "absolute" in str(wire.ask(bad, [r])[0][0]["error"])
            writes: list[int] = [w]
            good = dict(bad, path=str(log), max_bytes=1024)
            for i in range(300):  # more than one sendmsg can carry
                r, w = os.pipe()
                writes.append(w)
                assert wire.ask(dict(good, stream=f"x:{i}"), [r])[0][0] == {"ok": True}
                os.close(r)
            r, w = os.pipe()
            assert wire.ask(dict(good, stream="x:0"), [r])[0][0] == {"ok": True}  # idempotent
            os.close(r)
            os.close(w)
            replies = wire.ask({"op": "streams"})
            assert [len(m["streams"]) for m, _ in replies] == [MAX_FDS_PER_MESSAGE, 50]
            assert [m["more"] for m, _ in replies] == [True, False]
            names = [n for m, _ in replies for n in m["streams"]]
            assert sorted(names) == sorted(f"x:{i}" for i in range(300))
            for m, fds in replies:
                assert len(fds) == len(m["streams"])
                for fd in fds:
                    os.close(fd)
            for i, w in enumerate(writes[1:]):
                os.write(w, b"%d\n" % i)
        finally:
            wire.close()
            for w in writes:
                os.close(w)
        deadline = time.monotonic() + 10  # every pipe at EOF and no client: it exits
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.returncode == 0
        assert not sock.exists()
    lines = read_back(log, 1).split()
    assert sorted(int(n) for n in lines) == list(range(300))


def test_a_second_relay_exits_and_sigterm_writes_what_is_readable(home: Path) -> None:
    sock, log = home / "r.sock", home / "logs" / "t.log"
    with relay_process(sock) as first:
        second = subprocess.run(
            [sys.executable, "-I", str(RELAY_SCRIPT), str(sock)], timeout=10, capture_output=True
        )
        assert second.returncode == 0
        wire = Wire(sock)
        r, w = os.pipe()
        try:
            attach = {"op": "attach", "stream": "t:1", "path": str(log), "max_bytes": 4096}
            assert wire.ask(dict(attach, keep=2), [r])[0][0] == {"ok": True}
            os.close(r)
            first.send_signal(signal.SIGINT)  # a terminal's Ctrl-C: ignored
            os.kill(first.pid, signal.SIGSTOP)  # so the data is unread when SIGTERM comes
            os.write(w, b"last words\n")
            first.send_signal(signal.SIGTERM)
            os.kill(first.pid, signal.SIGCONT)
            assert first.wait(10) == 0
        finally:
            wire.close()
            os.close(w)
    assert log.read_bytes() == b"last words\n"


# ---- reading the files -------------------------------------------------------------------------


def write_lines(writer: LogWriter, lines: range, pad: int = 0) -> bytes:
    data = b"".join(b"line %d%s\n" % (i, b"." * pad) for i in lines)
    assert writer.write(data) == (len(data), None)
    return data


def test_tail_lines_reads_across_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    assert tail_lines(path, 5) == (b"", Position(0, 0))
    writer = LogWriter(str(path), 100, 3)
    write_lines(writer, range(60))
    writer.close()
    kept = read_back(path, 3)
    assert len(files_of(path, 3)) == 4 and len(path.read_bytes()) < 100
    text, position = tail_lines(path, 8, keep=3)
    assert text == b"".join(kept.splitlines(keepends=True)[-8:])
    assert position == Position(path.stat().st_ino, path.stat().st_size)
    assert tail_lines(path, 10_000, keep=3)[0] == kept
    assert tail_lines(path, 0, keep=3) == (b"", position)
    logfiles.remove_logs(path, 3)
    assert not list(tmp_path.iterdir())


def test_follower_across_rotations_has_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    path, max_bytes, keep = tmp_path / "f.log", 300, 4
    writer = LogWriter(str(path), max_bytes, keep)
    rng = random.Random(7)
    written, got = bytearray(), bytearray()
    n = 0
    with Follower(path, Position(0, 0), keep=keep, limit=97) as follower:
        for _ in range(2000):
            for _ in range(rng.randint(0, 8)):  # up to two rotations between two reads
                written += write_lines(writer, range(n, n + 1), pad=rng.randint(0, 50))
                n += 1
            lag_files = (len(written) - len(got)) // (max_bytes - 60) + 2
            for _ in range(rng.randint(0, 2) if lag_files < keep else 100):
                got += follower.read_new()
        while data := follower.read_new():
            got += data
    writer.close()
    assert n > 5000 and bytes(got) == bytes(written)


def test_follower_starts_where_the_tail_ended_even_after_rotations(tmp_path: Path) -> None:
    path = tmp_path / "g.log"
    writer = LogWriter(str(path), 200, 3)
    write_lines(writer, range(10))
    head, position = tail_lines(path, 3, keep=3)
    assert head == b"line 7\nline 8\nline 9\n"
    after = write_lines(writer, range(10, 40))  # two rotations since the tail
    with Follower(path, position, keep=3) as follower:
        got = b""
        while data := follower.read_new():
            got += data
    writer.close()
    assert got == after


def test_follower_drains_a_file_rotated_between_its_read_and_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a live relay rarely hits, made certain: right after the follower found the
    end of its file, the relay appends to it and rotates it, before the follower checks."""
    path = tmp_path / "r.log"
    writer = LogWriter(str(path), 100, 3)
    first = write_lines(writer, range(3))
    follower = Follower(path, Position(0, 0), keep=3)
    assert follower.read_new() == first
    real_inode, raced = logfiles._inode, bytearray()

    def inode_after_a_rotation(name: Path) -> int:
        if not raced:
            raced.extend(write_lines(writer, range(3, 20)))
        return real_inode(name)

    monkeypatch.setattr(logfiles, "_inode", inode_after_a_rotation)
    got = b""
    with follower:
        while data := follower.read_new():
            got += data
    writer.close()
    assert len(files_of(path, 3)) == 2 and got == bytes(raced)
