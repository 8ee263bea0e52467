"""IC_TOKENs: the per-agent secret an agent presents instead of a provider key.

The supervisor mints one per run; the router knows an agent by the token's hash only
(the token itself is never stored), so both sides share these two functions.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "ic-"


def new_token() -> str:
    """A fresh IC_TOKEN: 256 random bits, recognisable by its prefix in leaked logs."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
