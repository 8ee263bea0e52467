"""The books' journal file: whole records read back in order, a torn or corrupt tail
ignored (it was never acknowledged), and a write that cannot be made whole (a full disk)
leaves the file as it was."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ironrt.store.journal import Journal, encode_record, read_records
from tests.fs import fill, small_filesystem

ROW = ("UPDATE agents SET spent_usd = ? WHERE id = ?", (1.25, "a1"))


def test_records_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal.open(path)
    for seq in range(1, 6):
        assert journal.append(seq, [ROW, ("DELETE FROM scopes WHERE scope = ?", (f"s{seq}",))])
    journal.close()
    records = read_records(path)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[2].statements == [ROW, ("DELETE FROM scopes WHERE scope = ?", ("s3",))]
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_missing_journal_is_empty(tmp_path: Path) -> None:
    assert read_records(tmp_path / "none") == []


@given(cut=st.integers(min_value=1, max_value=200))
def test_a_torn_last_record_is_ignored(cut: int) -> None:
    whole = encode_record(1, [ROW]) + encode_record(2, [ROW])
    last = encode_record(3, [("INSERT INTO meta(key, value) VALUES (?, ?)", ("k", "v" * 100))])
    data = whole + last[: max(len(last) - cut, 0)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j"
        path.write_bytes(data)
        assert [r.seq for r in read_records(path)] == [1, 2]


def test_a_corrupt_record_ends_the_journal(tmp_path: Path) -> None:
    """A flipped byte fails the CRC: that record and everything after it are dropped."""
    first, second, third = (encode_record(n, [ROW]) for n in (1, 2, 3))
    bad = bytearray(second)
    bad[-3] ^= 0x40
    path = tmp_path / "j"
    path.write_bytes(first + bytes(bad) + third)
    assert [r.seq for r in read_records(path)] == [1]
    path.write_bytes(first + b"\xff" * 64)  # garbage: an impossible length
    assert [r.seq for r in read_records(path)] == [1]


def test_empty_drops_every_record(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal.open(path)
    assert journal.append(1, [ROW])
    journal.empty()
    assert journal.size == 0 and read_records(path) == []
    assert journal.append(2, [ROW])  # appends start again at the beginning
    journal.close()
    assert [r.seq for r in read_records(path)] == [2]


def test_a_full_disk_refuses_the_record_and_keeps_the_file_whole() -> None:
    with small_filesystem("1m") as fs:
        path = fs / "j"
        journal = Journal.open(path)
        assert journal.append(1, [ROW])
        fill(fs / "filler")
        big = [("INSERT INTO meta(key, value) VALUES (?, ?)", ("k", "x" * 200_000))]
        assert not journal.append(2, big)
        assert not journal.broken
        assert journal.size == path.stat().st_size
        (fs / "filler").unlink()
        assert journal.append(3, [ROW])
        journal.close()
        assert [r.seq for r in read_records(path)] == [1, 3]


INSERT = ("INSERT INTO meta(key, value) VALUES (?, ?)", ("k", "v"))
SPEND = ("UPDATE scopes SET spent_nanos = ? WHERE scope = ?", (5, "global"))


def test_a_statement_s_text_is_written_once_a_file_and_read_back_whole(tmp_path: Path) -> None:
    """The books write the same statements every call: each text goes into the file
    once, then its number; reading gives the texts back, in every record."""
    path = tmp_path / "j"
    journal = Journal.open(path)
    calls = [[ROW, INSERT, ROW], [INSERT, SPEND], [SPEND, ROW, INSERT]] * 50
    for seq, statements in enumerate(calls, 1):
        assert journal.append(seq, statements)
    journal.close()
    records = read_records(path)
    assert [r.statements for r in records] == calls
    assert [r.seq for r in records] == list(range(1, len(calls) + 1))
    full = sum(len(encode_record(seq, s)) for seq, s in enumerate(calls, 1))
    assert path.stat().st_size < full / 2  # 150 records, three texts written once each
    assert path.read_bytes().count(ROW[0].encode()) == 1


def test_numbers_start_again_after_empty_and_go_on_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal.open(path)
    assert journal.append(1, [ROW, INSERT])
    journal.empty()
    assert journal.append(2, [INSERT])  # its text again: the file no longer holds it
    assert journal.append(3, [INSERT, ROW])
    journal.close()
    again = Journal.open(path)  # records already there: their numbers go on
    assert again.append(4, [ROW, SPEND, INSERT])
    again.close()
    got = [(r.seq, r.statements) for r in read_records(path)]
    assert got == [(2, [INSERT]), (3, [INSERT, ROW]), (4, [ROW, SPEND, INSERT])]
    assert path.read_bytes().count(INSERT[0].encode()) == 1


def test_files_of_full_texts_read_as_before(tmp_path: Path) -> None:
    """A journal left by a daemon that wrote every text in full (before numbers)."""
    path = tmp_path / "j"
    path.write_bytes(encode_record(1, [ROW, INSERT]) + encode_record(2, [INSERT, ROW]))
    journal = Journal.open(path)  # and appended to, numbering what it finds
    assert journal.append(3, [ROW, SPEND])
    journal.close()
    assert [r.statements for r in read_records(path)] == [
        [ROW, INSERT],
        [INSERT, ROW],
        [ROW, SPEND],
    ]


def test_a_number_no_record_defined_ends_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(
        encode_record(1, [ROW]) + encode_record(2, [(0, ROW[1])]) + encode_record(3, [(1, ROW[1])])
    )
    assert [(r.seq, r.statements) for r in read_records(path)] == [(1, [ROW]), (2, [ROW])]


def test_a_refused_record_defines_nothing() -> None:
    """The texts of a record the disk refused are not in the file: the next record that
    uses them writes them in full."""
    with small_filesystem("1m") as fs:
        path = fs / "j"
        journal = Journal.open(path)
        assert journal.append(1, [ROW])
        fill(fs / "filler")
        big = ("INSERT INTO meta(key, value) VALUES (?, ?) -- big", ("k", "x" * 200_000))
        assert not journal.append(2, [SPEND, big])
        (fs / "filler").unlink()
        assert journal.append(3, [SPEND, ROW])
        journal.close()
        assert [(r.seq, r.statements) for r in read_records(path)] == [
            (1, [ROW]),
            (3, [SPEND, ROW]),
        ]
