"""Secrets per gitleaks' rule set: each kind found, look-alikes not, any split of a stream alike.

Every value is generated here from a fixed seed in the documented shape (prefix, alphabet,
length, checksum); none is a real key.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ironrt.pii.stream as stream_module
from ironrt.pii import Finding, Placeholders, StreamRedactor, StreamScanner, find_pii
from ironrt.pii.detectors import scan as real_scan
from ironrt.pii.rules import DEFAULT_RULES, Rules
from ironrt.pii.secrets import JWT_HEADER_MAX
from ironrt.pii.stream import SHORT_MAX
from tests.pii.splits import splits, streamed
from tests.pii.test_stream import NOISE, WORDS

_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ALNUM = string.ascii_letters + string.digits
_URLSAFE = _ALNUM + "-_"
_B32 = string.ascii_uppercase + "234567"
_HEX = "0123456789abcdef"
_LOWER_ALNUM = string.ascii_lowercase + string.digits

rng = random.Random(20250314)


def pick(alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def digits(n: int) -> str:
    return str(rng.randint(1, 9)) + pick(string.digits, n - 1)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def github_classic(prefix: str) -> str:
    body = pick(_B62, 30)
    crc = binascii.crc32(body.encode())
    check = ""
    while crc:
        crc, r = divmod(crc, 62)
        check = _B62[r] + check
    return prefix + body + check.rjust(6, "0")


def jwt(claims: dict[str, object], header: bytes = b'{"alg":"HS256","typ":"JWT"}') -> str:
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{b64url(header)}.{payload}.{b64url(rng.randbytes(32))}"


def pem(label: str, body_bytes: int, armor: str = "", width: int = 64) -> str:
    body = base64.b64encode(rng.randbytes(body_bytes)).decode()
    lines = "\n".join(body[i : i + width] for i in range(0, len(body), width))
    return f"-----BEGIN {label}-----\n{armor}{lines}\n-----END {label}-----"


PGP_KEY = (
    "-----BEGIN PGP PRIVATE KEY BLOCK-----\n"
    "Version: GnuPG v2.0.22 (GNU/Linux)\nComment: https://gpgtools.org\n\n"
    + "\n".join(base64.b64encode(rng.randbytes(48)).decode() for _ in range(6))
    + "\n=8xQN\n-----END PGP PRIVATE KEY BLOCK-----"
)
ENCRYPTED_RSA = pem(
    "RSA PRIVATE KEY", 600, armor="Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,9F1E2D3C4B5A\n\n"
)

#: (value, kind) for every format the issue names; the first of each kind goes to streams.
POSITIVES: list[tuple[str, str]] = [
    ("sk-proj-" + pick(_URLSAFE, 74) + "T3BlbkFJ" + pick(_URLSAFE, 74), "openai_key"),
    ("sk-svcacct-" + pick(_URLSAFE, 58) + "T3BlbkFJ" + pick(_URLSAFE, 58), "openai_key"),
    ("sk-admin-" + pick(_URLSAFE, 58) + "T3BlbkFJ" + pick(_URLSAFE, 58), "openai_key"),
    ("sk-" + pick(_ALNUM, 20) + "T3BlbkFJ" + pick(_ALNUM, 20), "openai_key"),
    ("sk-ant-api03-" + pick(_URLSAFE, 93) + "AA", "anthropic_key"),
    ("sk-ant-admin01-" + pick(_URLSAFE, 93) + "AA", "anthropic_key"),
    ("sk-ant-oat01-" + pick(_URLSAFE, 100), "anthropic_key"),
    ("AKIA" + pick(_B32, 16), "aws_access_key_id"),
    ("ASIA" + pick(_B32, 16), "aws_access_key_id"),
    ("ABIA" + pick(_B32, 16), "aws_access_key_id"),
    ("ACCA" + pick(_B32, 16), "aws_access_key_id"),
    ("A3TX" + pick(_B32, 16), "aws_access_key_id"),
    # AWS's documentation example: gitleaks allowlists `.+EXAMPLE$`; we report it (see
    # secrets.py: redacting an example costs nothing, the allowlist lets real shapes by).
    ("AKIAIOSFODNN7EXAMPLE", "aws_access_key_id"),
    *[(github_classic(p), "github_token") for p in ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")],
    ("github_pat_" + pick(_ALNUM, 22) + "_" + pick(_ALNUM, 59), "github_token"),
    ("glpat-" + pick(_URLSAFE, 20), "gitlab_token"),
    ("glpat-" + pick(_URLSAFE, 27) + ".01" + pick(_LOWER_ALNUM, 7), "gitlab_token"),
    ("gldt-" + pick(_ALNUM, 20), "gitlab_token"),
    ("glrt-" + pick(_ALNUM, 20), "gitlab_token"),
    ("glrt-t1_" + pick(_ALNUM, 27) + ".01" + pick(_LOWER_ALNUM, 7), "gitlab_token"),
    ("glptt-" + pick(_HEX, 40), "gitlab_token"),
    ("GR1348941" + pick(_ALNUM, 20), "gitlab_token"),
    ("glcbt-" + pick(_ALNUM, 5) + "_" + pick(_ALNUM, 20), "gitlab_token"),
    ("glimt-" + pick(_ALNUM, 25), "gitlab_token"),
    ("glft-" + pick(_ALNUM, 20), "gitlab_token"),
    ("glsoat-" + pick(_ALNUM, 20), "gitlab_token"),
    ("glagent-" + pick(_ALNUM, 50), "gitlab_token"),
    ("gloas-" + pick(_ALNUM, 64), "gitlab_token"),
    (f"xoxb-{digits(12)}-{digits(13)}-{pick(_ALNUM, 24)}", "slack_token"),
    (f"xoxp-{digits(12)}-{digits(12)}-{digits(13)}-{pick(_HEX, 32)}", "slack_token"),
    (f"xoxe-{digits(13)}-{digits(13)}-{digits(13)}-{pick(_HEX, 32)}", "slack_token"),
    (f"xapp-1-A{digits(10)}-{digits(13)}-{pick(_HEX, 64)}", "slack_token"),
    (f"xoxe.xoxp-1-{pick(_ALNUM, 164)}", "slack_token"),
    (f"xoxe-1-{pick(_ALNUM, 146)}", "slack_token"),
    (f"xoxb-{digits(12)}-{pick(_ALNUM, 24)}", "slack_token"),
    (f"xoxa-2-{pick(_ALNUM, 30)}", "slack_token"),
    (f"xoxs-{digits(10)}-{digits(10)}-{digits(10)}-{pick(_HEX, 10)}", "slack_token"),
    (
        f"hooks.slack.com/services/T{pick(_B32, 8)}/B{pick(_B32, 10)}/{pick(_ALNUM, 24)}",
        "slack_webhook",
    ),
    (
        f"hooks.slack.com/workflows/T{pick(_B32, 10)}/A{pick(_B32, 10)}/{digits(18)}/{pick(_ALNUM, 24)}",
        "slack_webhook",
    ),
    (f"hooks.slack.com/triggers/{pick(_ALNUM, 56)}", "slack_webhook"),
    ("sk_live_" + pick(_ALNUM, 24), "stripe_key"),
    ("sk_test_" + pick(_ALNUM, 99), "stripe_key"),
    ("rk_live_" + pick(_ALNUM, 34), "stripe_key"),
    ("rk_test_" + pick(_ALNUM, 24), "stripe_key"),
    ("sk_prod_" + pick(_ALNUM, 99), "stripe_key"),
    ("AIza" + pick(_URLSAFE, 35), "google_api_key"),
    (pem("RSA PRIVATE KEY", 600), "private_key"),
    (pem("PRIVATE KEY", 120), "private_key"),
    (pem("EC PRIVATE KEY", 120), "private_key"),
    (pem("DSA PRIVATE KEY", 440), "private_key"),
    (pem("OPENSSH PRIVATE KEY", 400, width=70), "private_key"),
    (pem("ENCRYPTED PRIVATE KEY", 700), "private_key"),
    (PGP_KEY, "private_key"),
    (ENCRYPTED_RSA, "private_key"),
    (jwt({"sub": "1234567890", "name": "Jane Roe", "iat": 1516239022}), "jwt"),
    (jwt({"sub": "42"}, b'{ "alg": "RS256", "kid": "k1" }'), "jwt"),  # `eyAi…`
    ("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "jwt"),  # unsecured, no signature
    (jwt({"sub": "7"}) + "==", "jwt"),  # a padded signature, as gitleaks allows
    (base64.b64encode(jwt({"sub": "k8s"}).encode()).decode(), "jwt"),  # a Kubernetes secret
]
KINDS = sorted({kind for _, kind in POSITIVES})


@pytest.mark.parametrize(("value", "kind"), POSITIVES, ids=[v[:16] for v, _ in POSITIVES])
def test_secret_is_found_whole(value: str, kind: str) -> None:
    for text in (f"token:\n{value}\nend", f'{{"key": "{value}"}}', value):
        (f,) = find_pii(text)
        assert (f.type, f.value, f.kind) == ("SECRET", value, kind)


def test_a_webhook_url_keeps_its_scheme() -> None:
    hook = next(v for v, kind in POSITIVES if kind == "slack_webhook")
    text = f"post to https://{hook} now"
    assert Placeholders().redact(text, find_pii(text)) == "post to https://[SECRET_1] now"


def test_a_json_escaped_private_key_is_found_whole() -> None:
    escaped = ENCRYPTED_RSA.replace("\n", "\\n")
    assert [f.value for f in find_pii(f'{{"key": "{escaped}"}}')] == [escaped]


@pytest.mark.parametrize(
    "text",
    [
        "export OPENAI_API_KEY=sk-your-key-here-replace-me",
        "sk-proj-XXXXXXXX",
        "sk-ant-api03-...",
        "AKIAXXXXXXXXXXXXXXXX",  # base32, but no entropy
        "AKIA1234567890ABCDEF",  # 0, 1, 8, 9 are not base32
        "TODAYINASIAASACKOFRICEFELLOVER",
        github_classic("ghp_")[:-1] + "0",  # checksum fails
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "github_pat_" + pick(_ALNUM, 40),
        "AIza" + pick(_URLSAFE, 30),  # too short
        "AIza" + pick(_URLSAFE, 40),  # too long
        "AIzaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "glpat-xxxxxxxxxxxxxxxxxxxx",
        "glpat-XXXXXXXXXXX-XXXXXXXX",
        "glpat-" + pick(_ALNUM, 12),
        "glptt-" + pick("ghijklmnop", 40),
        "xoxb-123",
        "xoxb-xoxb-my-bot-token",
        "xoxb-Slack_BOT_TOKEN",
        "xoxp-1234567890",
        "xoxe.xoxp-1-RANDOMSTRINGHERE",
        "https://hooks.slack.com/services/T000/B000/XXXX",
        "sk_test_xxxxxxxxxx",
        "task_test_" + pick(_ALNUM, 30),
        "pk_live_" + pick(_ALNUM, 24),  # publishable: public by design
        "whsec_" + pick(_ALNUM, 32),  # no gitleaks rule
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQENBFOrMNcBCAC+gLI4s3bUkobS5NpOQbWf\n-----END PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN CERTIFICATE-----",
        "eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxIn0.c2ln",  # header has no "alg"
        "eyJhbGciOiJIUzI1NiJ9x.eyJzdWIiOiIxIn0.c2ln",  # header is not JSON
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln.ZXh0cmE",  # four segments
        "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",  # payload is not `ey…` (gitleaks neither)
        base64.b64encode(b"eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxIn0.c2ln").decode(),
        "They keyed the eye of the money key: hey, obey.",
    ],
)
def test_secret_near_misses(text: str) -> None:
    assert find_pii(text) == []


# --- streams ---------------------------------------------------------------------------------

STREAM_SAMPLES = [next(v for v, k in POSITIVES if k == kind) for kind in KINDS] + [
    PGP_KEY,
    ENCRYPTED_RSA,
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
    POSITIVES[-1][0],
]
#: Pieces of the openers and closers the streaming scanner watches for.
TRICKY = [
    "/", "=", "==", ".", "\n", "\\n", "https://", "ey", "eyJ", "ZXlK", "-----BEGIN ",
    "-----BEGIN RSA PRIVATE KEY-----\n", "-----END RSA PRIVATE KEY-----", "Proc-Type: 4,X\n",
    "hooks.slack.com/services/", "MIIEpAIBAAKCAQEA3Tz2", "xoxb-", "glpat-", "sk_live_",
]  # fmt: skip
fragments = st.lists(
    st.one_of(
        st.sampled_from(STREAM_SAMPLES),
        st.sampled_from([*NOISE, *WORDS, *TRICKY]),
        st.text(alphabet="abcdefyJ0123456789-_./=+: \n", max_size=8),
    ),
    max_size=10,
).map("".join)


def split() -> st.SearchStrategy[tuple[str, list[str]]]:
    return splits(fragments, 16)


@settings(max_examples=200, deadline=None)
@given(split(), st.sampled_from([0, 0, 7, 100]))
def test_any_split_finds_what_the_whole_text_does(case: tuple[str, list[str]], batch: int) -> None:
    text, pieces = case
    assert streamed(pieces, batch) == (text, find_pii(text))


@pytest.mark.parametrize("value", STREAM_SAMPLES, ids=[v[:16] for v in STREAM_SAMPLES])
def test_each_kind_streamed_a_character_at_a_time(value: str) -> None:
    text = f"see {value} and 4111 1111 1111 1111."
    assert streamed(list(text)) == (text, find_pii(text))
    redactor = StreamRedactor(Placeholders())
    out = "".join(redactor.feed(c) for c in text) + redactor.flush()
    assert value not in out and "[SECRET_1]" in out


# --- sizes -----------------------------------------------------------------------------------

BIG_JWT = jwt({"sub": "1", "blob": pick(_ALNUM, 48 * 1024)})  # 64 KB
RSA_16384 = pem("RSA PRIVATE KEY", 9350)  # the size of an RSA-16384 key: ~13 KB of body
BIG_JWT_B64 = base64.b64encode(BIG_JWT.encode()).decode()


@pytest.mark.parametrize(
    ("value", "kind"),
    [(BIG_JWT, "jwt"), (BIG_JWT_B64, "jwt"), (RSA_16384, "private_key")],
    ids=["jwt", "jwt-base64", "rsa-16384"],
)
def test_big_secrets_are_found_whole_and_streamed(value: str, kind: str) -> None:
    assert len(value) > 12_000
    text = f"here: {value}\nthanks"
    expected = [Finding("SECRET", 6, 6 + len(value), value, kind)]
    assert find_pii(text) == expected
    for size in (4, 61, 4096):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        assert streamed(pieces) == (text, expected)


def test_a_big_jwt_streamed_in_small_pieces_is_scanned_a_few_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Rescanning the held JWT at every piece would hand the detectors ~16,000 growing tails
    # (about a billion characters); a JWT stays open through text that cannot close it, so
    # only the pieces that could (its dots, its end) are scanned.
    handed: list[int] = []

    def counting_scan(buf: str, start: int = 0, rules: Rules = DEFAULT_RULES) -> list[Finding]:
        handed.append(len(buf) - start)
        return real_scan(buf, start, rules)

    monkeypatch.setattr(stream_module, "scan", counting_scan)
    for value in (BIG_JWT, BIG_JWT_B64, RSA_16384):
        handed.clear()
        text = f"token {value} end"
        _, findings = streamed([text[i : i + 4] for i in range(0, len(text), 4)])
        assert [f.value for f in findings] == [value]
        assert sum(handed) <= 10 * len(text), (len(handed), sum(handed))


def test_a_long_run_that_only_starts_like_a_jwt_is_not_held_forever() -> None:
    # base64 of a JSON document starts with `eyJ` too; without the header's dot it is held
    # no longer than a header can be.
    blob = b64url(json.dumps({"data": pick(_ALNUM, 30_000)}).encode())
    scanner = StreamScanner()
    for i in range(0, len(blob), 64):
        scanner.feed(blob[i : i + 64])
        assert scanner.held <= JWT_HEADER_MAX + SHORT_MAX
    assert find_pii(blob) == []


AWS_SECRET = "tvKxOjX6n9BP2VnomwW+jxwJpGPUAd3ogVn/UZP8"


@pytest.mark.parametrize(
    "text",
    [
        f"[default]\naws_secret_access_key = {AWS_SECRET}\n",
        f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        f'{{"SecretAccessKey": "{AWS_SECRET}"}}',
        f"aws_secret_key: '{AWS_SECRET}'",
    ],
)
def test_an_aws_secret_access_key_is_found_after_its_name(text: str) -> None:
    (f,) = find_pii(text)
    assert (f.kind, f.value) == ("aws_secret_access_key", AWS_SECRET)
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    out, found = streamed(pieces)
    assert out == text and [x.value for x in found] == [AWS_SECRET]


@pytest.mark.parametrize(
    "text",
    [
        f"sha256 = {AWS_SECRET}",  # 40 base64 characters without the name: anything
        f"aws_secret_access_key = {'A' * 40}",  # no entropy: a placeholder
        f"aws_secret_access_key = {AWS_SECRET}xyz",  # longer than a key
    ],
)
def test_forty_base64_characters_without_the_name_are_not_a_secret(text: str) -> None:
    assert find_pii(text) == []
