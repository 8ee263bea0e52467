"""The closest known word to a misspelt one, for "did you mean" in error messages.

One place for it: the kernel (prices.toml), the keys file, the control API and the apps
file each suggest a spelling. difflib is imported on the error path only, so neither the
CLI's start-up nor the daemon's pays for it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` is most likely a misspelling of, if any."""
    import difflib

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)`, or '' when no choice is close."""
    found = closest(word, choices)
    return f" (did you mean {found!r}?)" if found else ""
