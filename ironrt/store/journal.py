"""The books' journal: every write of money, appended before the call's answer ends.

Committing a call's books to SQLite before its answer costs the answer ~0.15-0.2 ms
(a trace row with its indexes, two rollups, an agent and its scopes). Appending the same
statements to this file costs one `os.write` of a few hundred bytes. Once that returns
the record is in the kernel's page cache: a SIGKILLed daemon loses nothing, exactly as
with SQLite's WAL at `synchronous=NORMAL` (neither survives a power cut without fsync).
SQLite is then committed behind the answers, in groups (`ironrt.store.books`).

Each record is one write: a frame header (payload length, CRC-32, sequence number) and
the msgpack of its statements, each as (SQL, parameters). A statement's SQL text is
written in full the first time the file holds it, and as its number after that (the
texts are numbered in the order the file first holds them, so the reader numbers them
as it reads): a call's books are the same five or six statements every time, and their
text was 87 % of a record (2.7 KB), its CRC and its write; now a record is ~300 bytes.
A file of full texts only (as `encode_record` writes, and journals before numbers were)
reads the same. The sequence number is the books' own, one per write, and
every SQLite commit stores the last one it holds (`meta.books_journal_seq`), so replaying
the journal at start applies exactly the records SQLite is missing, in order, once. A
record torn by a crash mid-write (or a disk that filled mid-frame) fails its length or
CRC check: it and anything after it were never acknowledged, and are ignored.

The file is emptied once SQLite holds everything in it, so it stays small.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import msgspec

#: length of the payload, its CRC-32 (with the sequence number), sequence number.
_FRAME = struct.Struct("<IIQ")
#: A record larger than this is a corrupt header, not a record (a write is a few KB).
_MAX_RECORD = 64 * 1024 * 1024

Statement = tuple[str, tuple[Any, ...]]
#: A statement as a record holds it: its SQL text, or the number of a text the file
#: already holds.
_Keyed = tuple[str | int, tuple[Any, ...]]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[tuple[str | int, tuple[Any, ...]]]).decode


class JournalRecord(msgspec.Struct, frozen=True):
    seq: int
    statements: list[Statement]


def _crc(seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "little")))


def encode_record(seq: int, statements: list[Statement] | list[_Keyed]) -> bytes:
    """One record's frame; `statements` as given (full texts read anywhere in a file)."""
    payload = _encode(statements)
    return _FRAME.pack(len(payload), _crc(seq, payload), seq) + payload


def read_records(path: Path) -> list[JournalRecord]:
    """The whole records in the file, in order, up to the first torn or corrupt one."""
    return _read(path)[0]


def _read(path: Path) -> tuple[list[JournalRecord], list[str]]:
    """The whole records, and the SQL texts they hold in the order they first appear
    (their numbers). A record naming a number no earlier record defined is corrupt."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], []
    out: list[JournalRecord] = []
    texts: list[str] = []
    known: set[str] = set()
    at, end, head = 0, len(data), _FRAME.size
    while at + head <= end:
        length, crc, seq = _FRAME.unpack_from(data, at)
        start = at + head
        if length > _MAX_RECORD or start + length > end:
            break
        payload = data[start : start + length]
        if _crc(seq, payload) != crc:
            break
        try:
            keyed = _decode(payload)
        except msgspec.DecodeError:
            break
        statements: list[Statement] = []
        for key, params in keyed:
            if isinstance(key, str):
                if key not in known:
                    known.add(key)
                    texts.append(key)
                statements.append((key, tuple(params)))
            elif 0 <= key < len(texts):
                statements.append((texts[key], tuple(params)))
            else:
                return out, texts
        out.append(JournalRecord(seq, statements))
        at = start + length
    return out, texts


class Journal:
    """The open journal file, appended to by the event loop's thread only."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        #: Bytes in the file (every record in it is whole).
        self.size = os.fstat(fd).st_size
        #: A torn record could not be cut off: records after it would be invisible to
        #: replay, so nothing more may be acknowledged on the strength of this file.
        self.broken = False
        #: The number of each SQL text the file holds (the order it first holds them).
        #: None: records are there already, their numbers read at the first append (the
        #: books empty the file right after opening it: it is not read twice at start).
        self._numbers: dict[str, int] | None = None if self.size else {}

    @classmethod
    def open(cls, path: Path) -> Journal:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return cls(path, fd)

    def append(self, seq: int, statements: list[Statement]) -> bool:
        """Write one record; False if it could not be written whole (a full disk, say),
        in which case the file is cut back to the records before it."""
        numbers = self._numbers
        if numbers is None:  # appending to records already there: go on with their numbers
            numbers = self._numbers = {sql: n for n, sql in enumerate(_read(self.path)[1])}
        fresh: dict[str, int] | None = None  # texts this record defines
        keyed: list[_Keyed] = []
        for sql, params in statements:
            number = numbers.get(sql)
            if number is None and fresh is not None:
                number = fresh.get(sql)
            if number is None:
                if fresh is None:
                    fresh = {}
                fresh[sql] = len(numbers) + len(fresh)
                keyed.append((sql, params))
            else:
                keyed.append((number, params))
        frame = encode_record(seq, keyed)
        try:
            written = os.write(self._fd, frame)
        except OSError:
            written = -1
        if written == len(frame):
            self.size += written
            if fresh is not None:  # in the file now: numbered from here on
                numbers.update(fresh)
            return True
        if written > 0:  # a partial frame would hide every later record from replay
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                self.broken = True
        return False

    def empty(self) -> None:
        """Drop every record: SQLite holds them all."""
        os.ftruncate(self._fd, 0)
        self.size = 0
        self._numbers = {}  # the next record defines its texts again

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
