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
        "Conflict",
        "DaemonError",
        "DaemonUnavailable",
        "InvalidRequest",
        "IronrtError",
        "Runtime",
        "StartFailed",
        "WaitTimeout",
        "__version__",
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
        "wait_until",
    ]
