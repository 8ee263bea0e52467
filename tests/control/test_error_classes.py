"""The setup errors live in `ironrt.errors` and are still importable where they were
defined before, as the same classes with the same bases (code catches `ValueError` for a
bad setting, `RuntimeError` for a database too new)."""

from __future__ import annotations

import importlib

import pytest

import ironrt
from ironrt import errors

MOVED = [
    ("ironrt.config", "ConfigError", ValueError),
    ("ironrt.private_home", "HomeNotPrivate", errors.ConfigError),
    ("ironrt.keys", "KeysFileError", ValueError),
    ("ironrt.supervisor.envfiles", "EnvFileError", ValueError),
    ("ironrt.service_unit", "UnitError", ValueError),
    ("ironrt.store.db", "SchemaTooNew", RuntimeError),
    ("ironrt.daemon", "DaemonAlreadyRunning", RuntimeError),
    ("ironrt.apps.problems", "AppsFileError", Exception),
]


@pytest.mark.parametrize(("module", "name", "base"), MOVED, ids=[m[1] for m in MOVED])
def test_moved_errors_are_the_same_class_in_both_places(
    module: str, name: str, base: type[Exception]
) -> None:
    cls = getattr(errors, name)
    assert cls.__module__ == "ironrt.errors"
    assert getattr(importlib.import_module(module), name) is cls
    assert cls.__mro__[1] is base
    assert not issubclass(cls, errors.IronrtError)  # not an answer of the control API


def test_config_error_is_public() -> None:
    assert ironrt.ConfigError is errors.ConfigError
    assert "ConfigError" in ironrt.__all__
