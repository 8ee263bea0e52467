"""Cheap conversion of command-line values, so that no command imports pydantic.

Recent typer releases convert every non-flag parameter through a pydantic TypeAdapter,
built lazily on first use: a single `ID` argument or `--home` option then costs the import
of pydantic (about 100 ms on a slow machine, more than the rest of `ironrt ps`). Our
parameters are all plain (str, int, float, Path, a Literal choice, a list of str), so we
give typer a converter for exactly those and leave anything else to typer.

The hook is feature-detected: on a typer that converts with click's own types there is
nothing to do and `install()` returns. tests/cli pins the effect (no pydantic in
`sys.modules` after a command ran).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import typer

_installed = False
_SIMPLE = (str, int, float, bool, Path)
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def _choices(annotation: Any) -> tuple[str, ...] | None:
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
        if all(isinstance(v, str) for v in values):
            return values
    return None


def _supported(annotation: Any, info: Any) -> bool:
    if annotation is Path and (
        getattr(info, "exists", False) or getattr(info, "resolve_path", False)
    ):
        return False  # leave typer's own path checks to typer
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        return item is str
    return annotation in _SIMPLE or _choices(annotation) is not None


def _convert(annotation: Any, value: Any, info: Any) -> Any:
    """One value, as typer would: type, choice and min/max checks; ValueError if bad."""
    choices = _choices(annotation)
    if choices is not None:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if annotation is str:
        return str(value)
    if annotation is Path:
        return Path(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"{value!r} is not a boolean")
    try:
        number = annotation(value)
    except (TypeError, ValueError):
        kind = "an integer" if annotation is int else "a number"
        raise ValueError(f"{value!r} is not {kind}") from None
    if annotation is float and not math.isfinite(number):
        # Every number ironrt takes (USD, seconds) is finite, and NaN passes any min/max.
        raise ValueError(f"{value!r} is not a finite number")
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    if low is not None and number < low:
        raise ValueError(f"{number} is smaller than the minimum {low}")
    if high is not None and number > high:
        raise ValueError(f"{number} is larger than the maximum {high}")
    return number


def install() -> None:
    try:
        from typer._coercion import RuntimeParam
        from typer.core import _TyperParameter
    except ImportError:  # a typer that converts with click types: already cheap
        return
    global _installed
    if _installed:
        return
    _installed = True

    @dataclass(frozen=True)
    class FastParam(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            annotation: Any = self.annotation
            info = self.parameter_info
            try:
                if get_origin(annotation) is list:
                    return [_convert(str, v, info) for v in value]
                return _convert(annotation, value, info)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), ctx=ctx, param=param) from None

    original = _TyperParameter.get_runtime_param

    def get_runtime_param(self: Any) -> Any:
        desc = self.type_descriptor
        info = desc.parameter_info
        if (
            self._runtime_param is None
            and desc.file_annotation is None
            and info.parser is None
            and _supported(desc.annotation, info)
        ):
            self._runtime_param = FastParam(parameter_info=info, annotation=desc.annotation)
        return original(self)

    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]
