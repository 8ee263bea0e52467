"""A 507 (`storage_error`: the daemon cannot write its state) reaches client code as
`ironrt.StorageError`, in both twins, and nothing was changed.

The disk is really full: the daemon's home is on a small tmpfs filled to the last byte
(as in tests/test_full_disk.py), so the refusal is the daemon's own, through its socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import ironrt
from ironrt import AsyncRuntime
from ironrt.client_requests import raise_for_error
from ironrt.tempdaemon import TempDaemon
from tests.fs import daemon_on, fill, small_filesystem


@dataclass
class FullDisk:
    daemon: TempDaemon
    agent: str  # an ended agent: removing it would be written to the disk


@pytest.fixture(scope="module")
def full_disk() -> Iterator[FullDisk]:
    with small_filesystem("4m") as fs:
        d = daemon_on(fs)
        with d:
            agent = d.rt.start_agent(["true"], name="ended", budget=1.0)
            d.rt.wait(agent, timeout=15)
            filler = fs / "filler"
            fill(filler)
            try:
                yield FullDisk(d, agent)
            finally:
                filler.unlink()  # room again, so the daemon stops as it should


def test_sync_client_raises_storage_error(full_disk: FullDisk) -> None:
    rt = full_disk.daemon.rt
    with pytest.raises(ironrt.StorageError, match="disk full") as refused:
        rt.update_agent(full_disk.agent, budget_usd=2.0)
    assert type(refused.value) is ironrt.StorageError
    with pytest.raises(ironrt.StorageError):
        rt.remove_agent(full_disk.agent)
    assert rt.get_agent(full_disk.agent).budget_usd == 1.0  # nothing changed
    assert rt.health().ok


async def test_async_client_raises_storage_error(full_disk: FullDisk) -> None:
    async with AsyncRuntime(home=full_disk.daemon.home, autostart=False, timeout=30) as rt:
        with pytest.raises(ironrt.StorageError, match="disk full") as refused:
            await rt.update_agent(full_disk.agent, budget_usd=3.0)
        assert type(refused.value) is ironrt.StorageError
        with pytest.raises(ironrt.StorageError):
            await rt.remove_agent(full_disk.agent)
        assert (await rt.get_agent(full_disk.agent)).budget_usd == 1.0
        assert (await rt.health()).ok


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        # Not the documented body (a proxy's page, a truncated answer): typed by status.
        (b"<html>Insufficient Storage</html>", 507, ironrt.StorageError),
        (b"", 500, ironrt.DaemonError),
        # A code this client does not know (a newer daemon's): typed by status too.
        (b'{"error": {"code": "quota_exceeded", "message": "m"}}', 507, ironrt.StorageError),
        # A status several classes answer with: the base class, never a wrong guess.
        (b'{"error": {"code": "gone", "message": "m"}}', 404, ironrt.IronrtError),
        (b'{"error": {"code": "agent_not_found", "message": "m"}}', 404, ironrt.AgentNotFound),
    ],
)
def test_error_answers_are_typed_by_code_then_status(
    body: bytes, status: int, expected: type[ironrt.IronrtError]
) -> None:
    with pytest.raises(ironrt.IronrtError) as raised:
        raise_for_error(status, body)
    assert type(raised.value) is expected


def test_full_disk_home_is_the_tmpfs(full_disk: FullDisk) -> None:
    """The refusals above are the disk's: the daemon's database lives on the full tmpfs."""
    assert Path(full_disk.daemon.home, "ironrt.db").exists()
    assert full_disk.daemon.home.parent.name.startswith("irt-fs-")
