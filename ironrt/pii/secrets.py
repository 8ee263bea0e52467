"""Credentials: provider and cloud keys, chat and CI tokens, private keys, JWTs.

The patterns follow gitleaks' rule set (`cmd/generate/config/rules/*.go`, compiled into
its `config/gitleaks.toml`), the reference most secret scanners share. Every format starts
with a fixed marker (`sk-`, `AKIA`, `ghp_`, `glpat-`, `xoxb-`, `sk_live_`, `AIza`, `ey`,
`-----BEGIN`), so each pattern runs only when a plain substring test finds its marker: on
ordinary text the whole family costs a handful of `in` checks (but see Cost, below).

Where this module departs from gitleaks, and why:

- Stricter where the format carries structure: GitHub's classic tokens must pass their
  CRC32 (gitleaks: entropy only); a JWT's header must decode to JSON naming its `alg`, and
  a base64-wrapped JWT (`ZXlK…`) must decode to such a JWT (gitleaks: a list of header
  name prefixes).
- Broader where a provider's shape is looser than the rule: OpenAI `sk-` keys without the
  `T3BlbkFJ` marker still count when long and mixed-case with digits (`openai_ok`);
  Anthropic keys of any `sk-ant-<kind><NN>-` kind, without the `AA` suffix; Slack tokens
  of the numeric-group shape this module read before (`secret_checks.slack_ok`);
  fine-grained `github_pat_` tokens without an entropy test.
- Whole tokens: gitleaks may report the first N characters of a longer run
  (`glpat-[\\w-]{20}`); a redactor must cover all of it, so every pattern ends at a token
  boundary and a documented length is a minimum (up to a few hundred characters).
- No allowlists of documentation examples (`AKIAIOSFODNN7EXAMPLE`, Firebase's sample
  keys): redacting an example costs nothing, while a rule such as `.+EXAMPLE$` lets a
  real-shaped key through. gitleaks' entropy thresholds are kept (AWS 3, Google 4, GitLab
  3 or 4, Stripe 2, Slack 2 or 3 bits a character), which is what rejects `xxxx`
  placeholders.
- Case: gitleaks reads private-key headers and some Slack prefixes case-insensitively;
  real ones are upper (PEM) and lower (Slack) case, and exact markers keep the substring
  tests exact.
- Private keys: a header alone, or a header and body without footer (a truncated paste),
  is reported; gitleaks needs 64 characters of body and a footer. Armor headers
  (`Proc-Type:`, `DEK-Info:`, PGP's `Version:`/`Comment:`) are part of the key.
- JWTs: the header is `ey…` as in gitleaks (`{"` or `{ `), the payload `eyJ…` (`{"`, what
  every library writes) rather than any `ey…`, so that the guarding substring test
  (`eyJ`) is exact and cheap on prose full of "they" and "key".
- Slack webhooks are reported from the host (`hooks.slack.com/…`): the path is the
  secret, and `https://` left in place keeps the redacted text readable.
- Sizes: a JWT's payload and signature are unbounded (its header at most `JWT_HEADER_MAX`,
  so a long base64 run that merely starts with `ey` is not held back as one); a private
  key's body at most `PEM_BODY_MAX` (1 MiB; RSA-16384 is ~13 KB); the other tokens at
  most a few hundred characters, which keeps them short findings for the stream.
- Not reported: Stripe `pk_` keys (publishable by design) and `whsec_` (no gitleaks rule),
  GitLab session cookies, base64-wrapped JWTs split over several lines.

Cost: every family is behind a one-character test (`"_" in text`, `"J" in text`…) or
shares a pass (AWS and Google); GitLab's `gl…-` is the exception, since `gl` and `-` are
common in English: its pattern costs one more pass (~1 ns a character) on such text.
"""

from __future__ import annotations

import re

from ironrt.pii.finding import Finding, new_finding
from ironrt.pii.secret_checks import entropy, jwt_from_base64, openai_ok, slack_ok
from ironrt.pii.validators import github_checksum_ok, jwt_header_ok

__all__ = [
    "JWT_HEADER_MAX",
    "PEM_BODY",
    "PEM_BODY_MAX",
    "PEM_FOOTER_MAX",
    "PEM_HEAD",
    "PEM_HEAD_MAX",
    "SLACK_HOOK_MAX",
    "find_secrets",
    "jwt_b64_head",
    "jwt_b64_prefix_ok",
    "jwt_prefix_ok",
    "pem_body_ok",
    "pem_end",
]

_A = re.ASCII

_SK = re.compile(
    r"sk-(?<![\w-]sk-)(?:(?P<ant>ant-[a-z]{3,6}[0-9]{2}-[\w-]{32,400})"
    r"|(?P<oai>(?:proj-|svcacct-|admin-)?[\w-]{20,400}))(?![\w-])",
    _A,
)
# AWS access key ids are a 4-character kind and 16 base32 characters (A-Z, 2-7); gitleaks'
# `A3T[A-Z0-9]` covers ids older than the `AKIA` scheme. Google API keys are `AIza` and 35
# characters. One pattern, one pass: both start with `A`.
_AWS_GOOGLE = re.compile(
    r"A(?:(?P<aws>(?:3T[A-Z0-9]|KIA|SIA|BIA|CCA)(?<![0-9A-Za-z]....)[A-Z2-7]{16}(?![0-9A-Za-z]))"
    r"|Iza(?<![\w-]AIza)[\w-]{35}(?![\w-]))",
    _A,
)
_GITHUB = re.compile(r"gh[pousr]_(?<!\wgh.._)[0-9A-Za-z]{36}(?!\w)", _A)
_GITHUB_PAT = re.compile(r"github_pat_(?<!\wgithub_pat_)\w{82}(?!\w)", _A)
# GitLab's prefixes (docs.gitlab.com, "Token prefixes"); routable tokens end in `.` and 9
# characters and come first, so the plain branch does not stop at their dot.
_GITLAB = re.compile(
    r"gl(?<![\w-]gl)(?:pat-[\w-]{27,300}\.[0-9a-z]{9}|rt-t[0-9]_[\w-]{27,300}\.[0-9a-z]{9}"
    r"|(?:pat|dt|rt|ft|soat|ffct)-[\w-]{20,300}|imt-[\w-]{25,300}|agent-[\w-]{50,300}"
    r"|oas-[\w-]{64,300}|ptt-[0-9a-f]{40}|cbt-[0-9A-Za-z]{1,5}_[\w-]{20,300})(?![\w-])",
    _A,
)
_GITLAB_RUNNER = re.compile(r"GR1348941(?<![\w-]GR1348941)[\w-]{20,300}(?![\w-])", _A)
#: A whole Slack token; `slack_ok` decides which kind, if any, it is.
_SLACK = re.compile(
    r"x(?<![\w-]x)(?:ox[abeoprs]|oxe\.xox[bp]|app)-[0-9A-Za-z-]{1,250}(?![\w-])", _A
)
#: Longest incoming-webhook URL path reported, from `hooks.slack.com/`.
SLACK_HOOK_MAX = 16 + 10 + 250
# The finding starts at the host: the scheme before it is not secret.
_SLACK_HOOK = re.compile(
    r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,250}(?![A-Za-z0-9+/])",
    _A,
)
_STRIPE = re.compile(r"(?<![\w-])[rs]k_(?:test|live|prod)_[0-9A-Za-z]{10,250}(?![\w-])", _A)

#: Longest JWT header: real ones are tens of characters, a few KB with an `x5c` chain.
JWT_HEADER_MAX = 16384
# `ey` is base64 of `{"` or `{ `; the payload is `eyJ` (`{"`, as every library writes it),
# which keeps the substring test that guards the pattern exact. Payload and signature also
# take `/` and `\` (standard base64, escaped slashes) and the signature `=` padding, as
# gitleaks does. No segment holds a dot, so each ends at one place: a failed match
# backtracks linearly.
_JWT = re.compile(
    rf"(ey(?<![\w.-]ey)[\w-]{{3,{JWT_HEADER_MAX - 2}}})\.eyJ[\w/\\-]{{2,}}"
    r"\.(?:[\w/\\-]+={0,2})?(?![\w/\\=-])(?!\.[\w-])",
    _A,
)
_JWT_B64 = re.compile(r"ZXlK(?<![\w+/=\\-]ZXlK)[\w+/-]{36,}={0,2}(?![\w+/=\\-])", _A)

#: Private key headers as gitleaks reads them (`RSA`, `EC`, `DSA`, `OPENSSH`, `ENCRYPTED`,
#: `PGP … BLOCK`, …), without a run of dashes inside.
PEM_HEAD = re.compile(r"-----BEGIN(?:[ A-Z0-9_]|-(?!-)){0,100}?PRIVATE KEY(?: BLOCK)?-----", _A)
_PEM_FOOT = re.compile(r"-----END(?:[ A-Z0-9_]|-(?!-)){0,100}?PRIVATE KEY(?: BLOCK)?-----", _A)
PEM_HEAD_MAX = 10 + 100 + 22
PEM_FOOTER_MAX = 8 + 100 + 22
#: Longest key body searched for a footer (an RSA-16384 key is about 13 KB).
PEM_BODY_MAX = 1 << 20
#: Armor headers at the top of a body: PEM's `Proc-Type:`/`DEK-Info:`, PGP's `Version:`.
#: Line breaks may be JSON escapes when the key sits in a JSON string (tool arguments).
_ARMOR_LINE = re.compile(r"(?:\s|\\[rn])*[A-Za-z][A-Za-z0-9-]{0,63}: [^\r\n\\]*", _A)
#: Base64 lines, PGP's `=` checksum line, JSON escapes; `-`, `:` and `,` so that a footer
#: or armor line still being streamed keeps a key open.
PEM_BODY = re.compile(r"[A-Za-z0-9+/=:,\s\\-]*", _A)
_PEM_RUN = re.compile(r"[A-Za-z0-9+/=\s\\]*", _A)


def _armor_end(text: str, pos: int, end: int) -> int:
    while (m := _ARMOR_LINE.match(text, pos, end)) is not None:
        pos = m.end()
    return pos


def pem_body_ok(text: str, body: int, end: int) -> bool:
    """Whether `text[body:end]` reads as (the beginning of) a private key's body."""
    return PEM_BODY.fullmatch(text, _armor_end(text, body, end), end) is not None


def pem_end(text: str, head: re.Match[str]) -> tuple[int, bool]:
    """Where the private key that starts with `head` ends, and whether its footer was seen.

    The footer is the first `-----` after the header, if it is one and what lies between
    reads as a body. Without one (a truncated paste) the key runs as far as base64 does, so
    its body is still covered. Either way the work stops at the next `-----`, so text with
    many headers costs one pass.
    """
    body = head.end()
    limit = min(len(text), body + PEM_BODY_MAX)
    dash = text.find("-----", body, limit + 5)
    if dash != -1 and text.startswith("-----END", dash) and pem_body_ok(text, body, dash):
        m = _PEM_FOOT.match(text, dash)
        if m is not None:
            return m.end(), True
    run = _PEM_RUN.match(text, _armor_end(text, body, limit), limit)
    end = run.end() if run is not None else body
    while end > body and text[end - 1].isspace():
        end -= 1
    return end, False


def jwt_prefix_ok(text: str, start: int, end: int) -> bool:
    """Whether `text[start:end]`, a run of JWT characters, may still grow into a JWT.

    For the streaming scanner, which holds an open JWT back: the header must stay within
    `JWT_HEADER_MAX` and, once its dot arrives, name an `alg`; the payload starts `eyJ`.
    """
    dot = text.find(".", start, end)
    if dot == -1:
        return end - start <= JWT_HEADER_MAX
    payload = text[dot + 1 : min(end, dot + 4)]
    return (
        dot - start <= JWT_HEADER_MAX
        and "eyJ".startswith(payload)
        and jwt_header_ok(text[start:dot])
    )


#: Base64 characters that cover a JWT's longest header, its dot and `ey`.
_B64_HEADER_SPAN = (JWT_HEADER_MAX + 3) // 3 * 4 + 8


def jwt_b64_head(text: str, start: int, end: int) -> str | None:
    """What the base64 run `text[start:end]` decodes to, as far as a JWT's header needs."""
    span = min(end, start + _B64_HEADER_SPAN) - start
    return jwt_from_base64(text[start : start + span - span % 4])


def jwt_b64_prefix_ok(text: str, start: int, end: int) -> bool:
    """`jwt_prefix_ok` for a base64-wrapped JWT."""
    decoded = jwt_b64_head(text, start, end)
    return decoded is not None and jwt_prefix_ok(decoded, 0, len(decoded))


def _jwt_ok(m: re.Match[str]) -> bool:
    return jwt_header_ok(m.group(1))


def _jwt_b64_ok(run: str) -> bool:
    decoded = jwt_from_base64(run)
    m = _JWT.fullmatch(decoded) if decoded is not None else None
    return m is not None and _jwt_ok(m)


_LONG = 1024


#: An AWS secret access key: 40 base64 characters, told from any other base64 only by the
#: name written before it (`aws_secret_access_key = ...`, `"SecretAccessKey": "..."`), as
#: in credentials files, env files and SDK configs. gitleaks has no rule for it (its AWS
#: rule covers key ids); a privacy review would flag it, so the name is the cue here.
_AWS_SECRET_VALUE = re.compile(r"(?<=[=:\s\"'])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", _A)
_AWS_SECRET_NAME = re.compile(
    r"(?i:aws_?secret(?:_?access)?_?key|secret_?access_?key)[\"']?\s{0,3}[:=]\s{0,3}[\"']?\Z",
    _A,
)
#: How far before the value its name may start (the name, quotes, separators).
_AWS_SECRET_CUE = 40


def _aws_secrets(text: str, start: int, out: list[Finding]) -> None:
    for m in _AWS_SECRET_VALUE.finditer(text, start):
        s = m.start()
        if (
            _AWS_SECRET_NAME.search(text, max(0, s - _AWS_SECRET_CUE), s)
            and entropy(m.group()) >= 3
        ):
            out.append(new_finding("SECRET", s, m.end(), m.group(), "aws_secret_access_key"))


def find_secrets(text: str, start: int, out: list[Finding]) -> None:
    """Append the secrets that start at or after `start` to `out`."""
    # A one-character test is a memchr; a longer marker costs a pass over the text (about a
    # ns a character), so each is tested only if a character it holds is present. On long
    # text the regex engine's own search for a pattern's literal prefix is the cheaper test;
    # on short text (a stream's tail) its fixed cost is not.
    long = len(text) > _LONG
    dash = "-" in text
    if dash and (long or "sk-" in text):
        for m in _SK.finditer(text, start):
            if m.group("ant"):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "anthropic_key"))
            elif not m.group("oai").startswith("ant-") and openai_ok(m.group()):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "openai_key"))
    if "A" in text:
        for m in _AWS_GOOGLE.finditer(text, start):
            kind, least = ("aws_access_key_id", 3) if m.group("aws") else ("google_api_key", 4)
            if entropy(m.group()) >= least:
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), kind))
    if ("ecret" in text or "ECRET" in text) and ("=" in text or ":" in text):
        _aws_secrets(text, start, out)
    underscore = "_" in text
    if underscore and (long or "gh" in text):
        for m in _GITHUB.finditer(text, start):
            if github_checksum_ok(m.group()):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "github_token"))
    if underscore and "github_pat_" in text:
        for m in _GITHUB_PAT.finditer(text, start):
            out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "github_token"))
    if dash and (long or "gl" in text):
        for m in _GITLAB.finditer(text, start):
            if entropy(m.group()) >= (4 if "." in m.group() else 3):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "gitlab_token"))
    if "G" in text and "GR1348941" in text:
        for m in _GITLAB_RUNNER.finditer(text, start):
            if entropy(m.group()) >= 3:
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "gitlab_token"))
    if "x" in text and dash and (long or "xox" in text or "xapp-" in text):
        for m in _SLACK.finditer(text, start):
            if slack_ok(m.group()):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "slack_token"))
    if "/" in text and "hooks.slack.com/" in text:  # a long needle: `in` skips ahead
        for m in _SLACK_HOOK.finditer(text, start):
            out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "slack_webhook"))
    if underscore and "k_" in text:
        _stripe(text, start, out)
    if "J" in text and "eyJ" in text:
        for m in _JWT.finditer(text, start):
            if _jwt_ok(m):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "jwt"))
    if "K" in text and "ZXlK" in text:
        for m in _JWT_B64.finditer(text, start):
            if _jwt_b64_ok(m.group()):
                out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "jwt"))
    if "G" in text and "-----BEGIN" in text:
        pos = start
        while (head := PEM_HEAD.search(text, pos)) is not None:
            begin, (end, _) = head.start(), pem_end(text, head)
            out.append(new_finding("SECRET", begin, end, text[begin:end], "private_key"))
            pos = end


def _stripe(text: str, start: int, out: list[Finding]) -> None:
    # `[rs]k_` as the pattern's first characters would make the engine try every r and s;
    # `k_` is rare, so find it and match from the character before.
    at = text.find("k_", start + 1)
    while at != -1:
        m = _STRIPE.match(text, at - 1)
        if m is not None and entropy(m.group()) >= 2:
            out.append(new_finding("SECRET", m.start(), m.end(), m.group(), "stripe_key"))
            at = text.find("k_", m.end())
        else:
            at = text.find("k_", at + 2)
