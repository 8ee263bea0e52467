"""Texts dense with personal data, for the PII tests and `bench/stall.py` alike."""

from __future__ import annotations

import random
from collections.abc import Sequence

WORDS = ["the", "customer", "asked", "about", "order", "12345", "on", "2023-10-14", "me"]


def dense_pii(size: int, samples: Sequence[str], seed: int = 7) -> str:
    """About `size` characters of prose with one of `samples` every ~60 characters."""
    rng = random.Random(seed)
    parts: list[str] = []
    n = 0
    while n < size:
        part = " ".join(rng.choices(WORDS, k=rng.randint(3, 9))) + f" {rng.choice(samples)}. "
        parts.append(part)
        n += len(part)
    return "".join(parts)[:size]
