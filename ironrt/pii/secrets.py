"""Credentials: provider API keys, cloud and chat tokens, private keys, JWTs.

Every secret format here starts with a fixed marker (`sk-`, `AKIA`, `ghp_`, `xoxb-`, `eyJ`,
`-----BEGIN`), so each pattern runs only when a plain substring test finds its marker: on
ordinary text the whole family costs a handful of `in` checks. Where the format carries a
checksum or a structure (GitHub's CRC32, AWS's base32 alphabet, a JWT's JSON header, the
marker inside OpenAI keys) it is checked, so placeholders such as `sk-your-key-here` and
public keys are not reported.
"""

from __future__ import annotations

import re

from ironrt.pii.finding import Finding, new_finding
from ironrt.pii.validators import github_checksum_ok, jwt_header_ok

__all__ = [
    "JWT_MAX",
    "PEM_BODY",
    "PEM_BODY_MAX",
    "PEM_FOOTER_MAX",
    "PEM_HEAD",
    "find_secrets",
    "pem_end",
]

_A = re.ASCII

_SK = re.compile(
    r"sk-(?<![\w-]sk-)(?:(?P<ant>ant-[a-z]{3,6}[0-9]{2}-[\w-]{32,200})"
    r"|(?P<oai>(?:proj-|svcacct-|admin-)?[\w-]{20,200}))(?![\w-])",
    _A,
)
#: Access key ids are a 4-letter kind and 16 base32 characters (A-Z, 2-7).
_AWS = re.compile(r"(?:AKIA|ASIA|ABIA|ACCA)(?<![0-9A-Za-z]....)[A-Z2-7]{16}(?![0-9A-Za-z])", _A)
_GITHUB = re.compile(r"gh[pousr]_(?<!\wgh.._)[0-9A-Za-z]{36}(?!\w)", _A)
_GITHUB_PAT = re.compile(r"github_pat_(?<!\wgithub_pat_)[0-9A-Za-z]{22}_[0-9A-Za-z]{59}(?!\w)", _A)
_SLACK = re.compile(
    r"(?:xox[abposr]-(?<![\w-].....)(?:[0-9]{1,14}-){1,3}[0-9A-Za-z]{16,64}"
    r"|xapp-(?<![\w-].....)[0-9]-[0-9A-Z]{6,20}-[0-9]{6,20}-[0-9a-f]{32,80})(?![\w-])",
    _A,
)
_JWT = re.compile(
    r"(eyJ(?<![\w.-]eyJ)[\w-]{5,1000})\.eyJ[\w-]{5,4000}\.[\w-]{0,1000}(?![\w-])(?!\.[\w-])", _A
)
#: Longest JWT the pattern accepts; the streaming scanner holds an open one up to this.
JWT_MAX = 6010

PEM_HEAD = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----", _A)
_PEM_FOOT = re.compile(r"-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----", _A)
#: Base64 body, legacy `Proc-Type:`/`DEK-Info:` lines, and `\n` escapes when the key sits
#: inside JSON (tool-call arguments).
PEM_BODY = re.compile(r"[A-Za-z0-9+/=:,\s\\-]*", _A)
#: Longest key body searched for a footer (an RSA-8192 key is about 6.5 KB).
PEM_BODY_MAX = 8192
PEM_FOOTER_MAX = 64
_PEM_RUN = re.compile(r"[A-Za-z0-9+/=\s\\]{0," + str(PEM_BODY_MAX) + "}", _A)


def pem_end(text: str, head: re.Match[str]) -> tuple[int, bool]:
    """Where the private key that starts with `head` ends, and whether its footer was seen.

    Without a footer (a truncated paste) the key runs as far as base64 does, so its body is
    still covered.
    """
    body = head.end()
    foot = text.find("-----END ", body, body + PEM_BODY_MAX + PEM_FOOTER_MAX)
    if foot != -1 and "-----" not in text[body:foot] and PEM_BODY.fullmatch(text, body, foot):
        m = _PEM_FOOT.match(text, foot)
        if m is not None:
            return m.end(), True
    run = _PEM_RUN.match(text, body)
    end = run.end() if run is not None else body
    while end > body and text[end - 1].isspace():
        end -= 1
    return end, False


def _openai_ok(key: str) -> bool:
    if "T3BlbkFJ" in key:  # base64 of "OpenAI", inside every key format so far
        return True
    body = key.rsplit("-", 1)[-1]
    return (
        len(key) >= 40
        and any(c.isdigit() for c in body)
        and any(c.isupper() for c in body)
        and any(c.islower() for c in body)
    )


_LONG = 1024


def find_secrets(text: str, start: int, out: list[Finding]) -> None:
    """Append the secrets that start at or after `start` to `out`."""
    # A one-character test is a memchr; a longer marker costs a pass over the text (about a
    # ns a character), so each is tested only if a character it holds is present. On long
    # text the regex engine's own search for a pattern's literal prefix is the cheaper test;
    # on short text (a stream's tail) its fixed cost is not.
    long = len(text) > _LONG
    if "-" in text and (long or "sk-" in text):
        for m in _SK.finditer(text, start):
            if m.group("ant"):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "anthropic_key"))
            elif not m.group("oai").startswith("ant-") and _openai_ok(m.group()):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "openai_key"))
    if "A" in text:
        for m in _AWS.finditer(text, start):
            out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "aws_access_key_id"))
    underscore = "_" in text
    if underscore and (long or "gh" in text):
        for m in _GITHUB.finditer(text, start):
            if github_checksum_ok(m.group()):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "github_token"))
    if underscore and "github_pat_" in text:
        for m in _GITHUB_PAT.finditer(text, start):
            out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "github_token"))
    if "x" in text and "-" in text and (long or "xox" in text or "xapp-" in text):
        for m in _SLACK.finditer(text, start):
            out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "slack_token"))
    if "J" in text and "eyJ" in text:
        for m in _JWT.finditer(text, start):
            if jwt_header_ok(m.group(1)):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "jwt"))
    if "G" in text and "-----BEGIN" in text:
        pos = start
        while (head := PEM_HEAD.search(text, pos)) is not None:
            start, (end, _) = head.start(), pem_end(text, head)
            out.append(new_finding("SECRET", start, end, text[start:end], "private_key"))
            pos = end
