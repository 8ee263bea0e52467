"""Bad input over the raw socket: always a 4xx JSON error naming the problem, never a crash."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat

import pytest

from ironrt.tempdaemon import TempDaemon


def raw(
    daemon: TempDaemon,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, object]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    try:
        sock.connect(str(daemon.home / "ironrt.sock"))
        head = f"{method} {path} HTTP/1.1\r\nhost: ironrt\r\ncontent-length: {len(body)}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        # The daemon may answer (413) before reading everything: then read that answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head_bytes, rest = data.split(b"\r\n\r\n", 1)
        status = int(head_bytes.split(b" ")[1])
        length = int(
            next(
                line.split(b":")[1]
                for line in head_bytes.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(rest) < length:
            rest += sock.recv(65536)
        return status, json.loads(rest)
    finally:
        sock.close()


def start_body(**over: object) -> bytes:
    body: dict[str, object] = {
        "command": ["sleep", "1"],
        "cwd": "/tmp",
        "env": {"PATH": os.environ["PATH"]},
    }
    body.update(over)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b"{not json", 400, "invalid_request", None),
        (start_body(budget_usd="lots"), 400, "invalid_request", "budget_usd"),
        (start_body(restart="sometimes"), 400, "invalid_request", "restart"),
        (start_body(colour="blue"), 400, "invalid_request", "colour"),
        (start_body(command=[]), 422, "invalid_request", None),
        (b'{"cwd": "/tmp"}', 400, "invalid_request", "command"),
        (start_body(command=["/nonexistent/agent.py"]), 422, "start_failed", "command"),
    ],
)
def test_bad_start_requests(
    daemon: TempDaemon, body: bytes, status: int, code: str, field: str | None
) -> None:
    got, payload = raw(daemon, "POST", "/v1/agents", body, {"content-type": "application/json"})
    error = payload["error"]
    assert isinstance(error, dict)
    assert got == status and error["code"] == code and error["message"]
    if field is not None:
        assert error["field"] == field
    assert daemon.rt.health().ok


def test_ten_megabyte_body_is_refused(daemon: TempDaemon) -> None:
    status, payload = raw(daemon, "POST", "/v1/agents", b"x" * (10 * 1024 * 1024))
    assert status == 413 and payload["error"]["code"] == "payload_too_large"  # type: ignore[index]
    assert daemon.rt.health().ok


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/agents/deadbeef0000", 404, "agent_not_found"),
        ("POST", "/v1/agents/deadbeef0000/stop", 404, "agent_not_found"),
        ("GET", "/v1/agents/deadbeef0000/metrics", 404, "agent_not_found"),
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("PUT", "/v1/agents", 405, "method_not_allowed"),
        ("GET", "/v1/events?limit=abc", 400, "invalid_request"),
        ("GET", "/v1/usage?by=colour", 400, "invalid_request"),
    ],
)
def test_unknown_things(daemon: TempDaemon, method: str, path: str, status: int, code: str) -> None:
    got, payload = raw(daemon, method, path)
    assert got == status and payload["error"]["code"] == code  # type: ignore[index]
    assert daemon.rt.health().ok


def test_socket_and_home_permissions(daemon: TempDaemon) -> None:
    assert stat.S_IMODE(os.stat(daemon.home / "ironrt.sock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.home).st_mode) == 0o700


def test_openapi_describes_every_route(daemon: TempDaemon) -> None:
    status, doc = raw(daemon, "GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    assert isinstance(paths, dict)
    for path in (
        "/v1/agents",
        "/v1/agents/{ref}/logs",
        "/v1/events",
        "/v1/usage",
        "/v1/traces",
        "/v1/limits",
        "/v1/health",
        "/v1/version",
    ):
        assert path in paths
    schemas = doc["components"]["schemas"]  # type: ignore[index]
    assert "StartRequest" in schemas and "Metrics" in schemas
    events = paths["/v1/events"]["get"]["responses"]["200"]["content"]  # type: ignore[index]
    assert {"application/json", "application/x-ndjson", "text/event-stream"} <= set(events)
    assert "Last-Event-ID" in events["text/event-stream"]["schema"]["description"]
    assert "/v1/traces/{trace_id}" in paths or any("/v1/traces/{" in p for p in paths)
    assert "/metrics" in paths


@pytest.mark.parametrize(
    ("path", "body", "field", "status"),
    [
        # A value of the right type, out of range or not allowed: 422.
        ("/v1/limits/global", {"window": "5x"}, "window", 422),
        ("/v1/limits/global", {"window": "0s"}, "window", 422),
        ("/v1/limits/global", {"budget_usd": -1}, "budget_usd", 422),
        ("/v1/limits/global", {"budget_usd": 1e300}, "budget_usd", 422),
        ("/v1/limits/global", {"rpm": 9223372036854775808}, "rpm", 422),
        ("/v1/limits/global", {"tpm": -9223372036854775809}, "tpm", 422),
        ("/v1/limits/global", {"max_concurrent": 0}, "max_concurrent", 422),
        ("/v1/limits/global", {"models": []}, "models", 422),
        # A wrong type, an unknown field, a bad path: 400.
        ("/v1/limits/global", {"models": "gpt-4o*"}, "models", 400),
        ("/v1/limits/global", {"budgett_usd": 5}, "budgett_usd", 400),
        ("/v1/limits/project:bad%20name", {"rpm": 5}, "scope", 400),
        ("/v1/limits/team:x", {"rpm": 5}, "scope", 400),
    ],
)
def test_bad_limits_are_refused_naming_the_field(
    daemon: TempDaemon, path: str, body: dict[str, object], field: str, status: int
) -> None:
    before = raw(daemon, "GET", "/v1/limits")
    got, answer = raw(daemon, "PUT", path, json.dumps(body).encode())
    assert got == status, answer
    error = answer["error"]
    assert isinstance(error, dict) and error["code"] == "invalid_request"
    assert field in str(error["message"]) + str(error.get("field"))
    assert raw(daemon, "GET", "/v1/limits") == before  # nothing changed


def test_limits_of_an_unknown_agent_is_a_404(daemon: TempDaemon) -> None:
    for method in ("GET", "PUT", "DELETE"):
        status, answer = raw(daemon, method, "/v1/limits/agent:nobody", b"{}")
        assert status == 404, answer


def test_start_refuses_huge_numbers_and_bad_projects(daemon: TempDaemon) -> None:
    for over in (
        {"max_restarts": 2**63},
        {"rpm": 2**63},
        {"tpm": 2**64 + 1},
        {"log_keep": -(2**63) - 1},
        {"log_max_bytes": 2**70},
        {"min_uptime_s": 1e300},
        {"project": "no spaces"},
    ):
        status, answer = raw(daemon, "POST", "/v1/agents", start_body(**over))
        assert status == 422, answer
        assert answer["error"]["field"] == next(iter(over)), answer  # type: ignore[index]
    assert raw(daemon, "GET", "/v1/agents")[1]["agents"] == []


def test_huge_numbers_in_an_update_change_nothing_and_the_daemon_lives_on(
    daemon: TempDaemon,
) -> None:
    """The finding: `PATCH {"rpm": 2**63}` once reached SQLite (OverflowError, a 500) after
    the record in memory had taken it, and the agent's next state change killed the
    daemon. Now: a 422 naming the field, nothing changed, the agent stops normally."""
    status, started = raw(daemon, "POST", "/v1/agents", start_body(command=["sleep", "30"]))
    assert status == 201, started
    ref = f"/v1/agents/{started['id']}"
    changes = [b'{"rpm": %d}' % 2**63, b'{"tpm": %d}' % 2**63, b'{"rpm": -1}']
    changes.append(b'{"budget_usd": 1e400}')  # beyond a double: not JSON's Infinity
    for change in changes:
        status, answer = raw(daemon, "PATCH", ref, change)
        assert status == 422, answer
        assert answer["error"]["field"] == next(iter(json.loads(change)))  # type: ignore[index]
    status, agent = raw(daemon, "GET", ref)
    assert (agent["rpm"], agent["tpm"], agent["budget_usd"]) == (None, None, None)
    status, stopped = raw(daemon, "POST", ref + "/stop", b"{}")
    assert status == 200 and stopped["status"] == "stopped", stopped
    assert daemon.rt.health().ok


def test_an_unknown_query_parameter_is_a_400_naming_it(daemon: TempDaemon) -> None:
    """A typo was answered as if the parameter were absent: `?agnet=nobody` listed every
    event, unfiltered, and `DELETE ...?foce=true` removed without force."""
    daemon.rt.start_agent(["sleep", "60"], name="bot")
    for method, path, name, hint in (
        ("GET", "/v1/events?agnet=nobody", "agnet", " (did you mean `agent`?)"),
        ("DELETE", "/v1/agents/bot?foce=true", "foce", " (did you mean `force`?)"),
        ("GET", "/v1/health?verbose=1", "verbose", ""),
    ):
        status, answer = raw(daemon, method, path)
        assert status == 400, answer
        error = answer["error"]
        assert isinstance(error, dict) and error["field"] == name, answer
        assert str(error["message"]).startswith(f"unknown query parameter `{name}`{hint}")
    assert daemon.rt.get_agent("bot").status.live  # the DELETE removed nothing
