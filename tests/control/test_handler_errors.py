"""What any exception in a control handler becomes: the documented error, never a dead
connection or daemon. Disk errors are 507 `storage_error` ("nothing was changed"); anything
else is a bug, answered 500 `internal` with its traceback in the daemon's log."""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
from typing import Any

import anyio
import pytest

from ironrt.calls import Operation
from ironrt.control.http import Request, Response, Router


def _raising(exc: BaseException) -> Any:
    async def handler(req: Request) -> Response:
        raise exc

    return handler


def _call(router: Router, path: str) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b""}
    anyio.run(router, scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (sqlite3.OperationalError("database or disk is full"), 507, "storage_error"),
        (sqlite3.DataError("bad"), 507, "storage_error"),
        (OSError(errno.ENOSPC, "No space left on device"), 507, "storage_error"),
        (OSError(errno.EROFS, "Read-only file system"), 507, "storage_error"),
        (OSError(errno.ENOENT, "No such file"), 500, "internal"),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), 500, "internal"),
        (RuntimeError("a bug"), 500, "internal"),
        (KeyError("missing"), 500, "internal"),
    ],
)
def test_every_exception_is_a_documented_answer(
    exc: BaseException, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router()
    router.add(
        Operation(name="boom", method="GET", path="/boom", summary="fails", answer=dict),
        _raising(exc),
    )
    with caplog.at_level(logging.ERROR, logger="ironrt.control"):
        got, body = _call(router, "/boom")
    assert (got, body["error"]["code"]) == (status, code)
    assert (
        "daemon.log" in body["error"]["message"]
        or "Nothing was changed" in body["error"]["message"]
    )
    record = caplog.records[-1]
    if status == 500:  # a bug: its traceback is logged, for the report
        assert record.exc_info is not None and record.exc_info[1] is exc
    else:
        assert str(exc) in record.getMessage()
