"""The public names of the package are a contract: adding one is a decision, removing one a
breaking change. This test pins them (as httpx's does)."""

from __future__ import annotations

import ironrt
import ironrt.errors
import ironrt.testing


def test_top_level_exports() -> None:
    assert sorted(ironrt.__all__) == [
        "AgentNotFound",
        "AmbiguousAgent",
        "AsyncRuntime",
        "ConfigError",
        "Conflict",
        "DaemonError",
        "DaemonUnavailable",
        "InvalidRequest",
        "IronrtError",
        "LibraryModeError",
        "Runtime",
        "StartFailed",
        "StorageError",
        "WaitTimeout",
        "__version__",
        "protect",
        "protect_agent",
    ]
    for name in ironrt.__all__:
        assert hasattr(ironrt, name)


def test_error_tree_is_shallow_and_shared() -> None:
    for name in ironrt.errors.__all__:
        obj = getattr(ironrt.errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, ironrt.errors.IronrtError)
            assert obj.__mro__[1] in (ironrt.errors.IronrtError, Exception)


def test_testing_helpers() -> None:
    assert sorted(ironrt.testing.__all__) == [
        "FakeUpstream",
        "ReceivedRequest",
        "StreamHold",
        "TempDaemon",
        "tagent",
        "tattempt",
        "tevent",
        "tflow",
        "wait_until",
    ]


def test_an_older_client_reads_answers_with_fields_it_does_not_know() -> None:
    """A daemon may add fields to its answers; a client must not break on them."""
    import msgspec

    from ironrt.protocol import Metrics, StartRequest

    newer = msgspec.json.encode(
        {
            "id": "a",
            "status": "running",
            "pid": 1,
            "exit_code": None,
            "cpu_percent": 0.0,
            "rss_bytes": 0,
            "num_processes": 1,
            "uptime_s": 1.0,
            "restarts": 0,
            "llm_calls": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "spent_usd": 0.0,
            "budget_usd": None,
            "budget_remaining_usd": None,
            "budget_used_percent": None,
            "pii_findings": 0,
            "errors": 0,
            "a_field_from_the_future": 1,
        }
    )
    assert msgspec.json.decode(newer, type=Metrics).id == "a"
    try:
        msgspec.json.decode(b'{"command": ["x"], "cwd": "/", "colour": 1}', type=StartRequest)
    except msgspec.ValidationError as exc:
        assert "colour" in str(exc)
    else:
        raise AssertionError("a request with an unknown field must be refused")
