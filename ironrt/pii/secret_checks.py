"""Checks that turn a secret-shaped match into a finding (`secrets.py` finds the shapes).

Three kinds of evidence, from strongest to weakest: a structure the format defines (a JWT's
JSON header, checked in `validators.py` with GitHub's CRC32), a marker a provider puts in
every key (`T3BlbkFJ` in OpenAI keys), and, where neither exists, the Shannon entropy
gitleaks requires of the same rule, which is what rejects `glpat-xxxxxxxxxxxxxxxxxxxx` and
`AKIAXXXXXXXXXXXXXXXX`. Each runs on a candidate the patterns already matched, so a few
microseconds apiece is fine; none does I/O.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter

__all__ = ["entropy", "jwt_from_base64", "openai_ok", "slack_ok"]


def entropy(text: str) -> float:
    """Shannon entropy in bits per character: gitleaks' `entropy` threshold, same formula."""
    n = len(text)
    return -sum(k / n * math.log2(k / n) for k in Counter(text).values())


def openai_ok(key: str) -> bool:
    """An `sk-` token is an OpenAI key if it holds the marker, else if it looks random.

    `T3BlbkFJ` (base64 of "OpenAI") sits in every key format so far and is what gitleaks
    requires; older and proxy-issued keys without it are still reported when long and
    mixed (digits, upper and lower case), which placeholders such as `sk-your-key-here` are
    not.
    """
    if "T3BlbkFJ" in key:
        return True
    body = key.rsplit("-", 1)[-1]
    return (
        len(key) >= 40
        and any(c.isdigit() for c in body)
        and any(c.isupper() for c in body)
        and any(c.islower() for c in body)
    )


_A = re.ASCII

#: gitleaks' Slack rules, each matched at the start of a token `secrets.py` found, with the
#: least entropy it asks of what it matches. gitleaks reads `xapp-` and the configuration
#: tokens case-insensitively: their bodies are read so here, their prefixes are exact.
_SLACK_RULES: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile(r"xoxb-[0-9]{10,13}-[0-9]{10,13}[a-zA-Z0-9-]*", _A), 3.0),  # bot
    (re.compile(r"xox[pe](?:-[0-9]{10,13}){3}-[a-zA-Z0-9-]{28,34}", _A), 2.0),  # user
    (re.compile(r"xapp-[0-9]-[A-Za-z0-9]+-[0-9]+-[A-Za-z0-9]+", _A), 2.0),  # app-level
    (re.compile(r"xoxe\.xox[bp]-[0-9]-[A-Za-z0-9]{163,166}", _A), 2.0),  # configuration
    (re.compile(r"xoxe-[0-9]-[A-Za-z0-9]{146}", _A), 2.0),  # configuration refresh
    (re.compile(r"xoxb-[0-9]{8,14}-[a-zA-Z0-9]{18,26}", _A), 2.0),  # legacy bot
    (re.compile(r"xox[ar]-(?:[0-9]-)?[0-9a-zA-Z]{8,48}", _A), 2.0),  # legacy workspace
    (re.compile(r"xox[os]-[0-9]+-[0-9]+-[0-9]+-[a-fA-F0-9]+", _A), 2.0),  # legacy
)
#: The shape this module accepted before following gitleaks: numeric groups, then a body.
_SLACK_GROUPS = re.compile(r"xox[abeoprs]-(?:[0-9]{1,14}-){1,3}[0-9A-Za-z]{16,64}", _A)


def slack_ok(token: str) -> bool:
    """Whether a whole `xox…-`/`xapp-` token is one of Slack's token kinds."""
    for rule, least in _SLACK_RULES:
        m = rule.match(token)
        if m is not None and entropy(m.group()) >= least:
            return True
    return _SLACK_GROUPS.fullmatch(token) is not None


_URLSAFE_TO_STD = str.maketrans("-_", "+/")


def jwt_from_base64(run: str) -> str | None:
    """The ASCII text that base64 `run` encodes (standard or URL-safe, padded or not).

    Kubernetes secrets and some CI variables hold a JWT base64-encoded once more
    (`ZXlK…` is base64 of `eyJ`); the caller checks that the text is a JWT.
    """
    body = run.rstrip("=")
    if len(body) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(
            body.translate(_URLSAFE_TO_STD) + "=" * (-len(body) % 4), validate=True
        )
        return raw.decode("ascii")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
