"""Secrets for the independent PII corpus, shaped from each provider's documented format.

Formats (as providers and secret scanners document them, not as ironrt matches them):

- OpenAI: `sk-proj-`, `sk-svcacct-`, `sk-admin-` keys: 58 or 74 URL-safe characters,
  `T3BlbkFJ` (base64 of "OpenAI"), 58 or 74 more; legacy `sk-` + 20 + `T3BlbkFJ` + 20.
- Anthropic: `sk-ant-api03-` (or `sk-ant-admin01-`) + 93 URL-safe characters + `AA`.
- AWS: access key ids `AKIA`/`ASIA` + 16 base32 characters; the 40-character secret access
  key, which has no prefix, only next to its name (`aws_secret_access_key = ...`).
- GitHub ("Behind GitHub's new authentication token formats", 2021): `ghp_`/`gho_`/`ghu_`/
  `ghs_`/`ghr_` + 30 base62 characters + their CRC32 in 6 base62 digits; fine-grained
  `github_pat_` + 22 + `_` + 59.
- GitLab `glpat-` + 20; Slack `xoxb-`/`xoxp-` tokens and webhook URLs; Stripe `sk_live_`/
  `rk_live_` + 24-99; Google `AIza` + 35.
- PEM private keys (PKCS#1 RSA, SEC1 EC, PKCS#8, OpenSSH) built as DER here from the
  seeded random bytes, so the corpus regenerates byte for byte without `cryptography`
  (whose key generation cannot be seeded): Ed25519 and EC keys are real keys (any 32-byte
  seed or scalar is one), RSA integers are random but sized and encoded like a real key.
- JWTs: HS256 signed with a random key, RS256 with a random 256-byte signature, a few with
  an ~8 KB payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import string
from collections.abc import Callable

from _pii_values import Source

_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_URLSAFE = string.ascii_letters + string.digits + "-_"
_ALNUM = string.ascii_letters + string.digits
_B32 = string.ascii_uppercase + "234567"
_HEX = "0123456789abcdef"


def _pick(src: Source, alphabet: str, n: int) -> str:
    return "".join(src.rng.choice(alphabet) for _ in range(n))


def _bytes(src: Source, n: int) -> bytes:
    return src.rng.getrandbits(8 * n).to_bytes(n, "big")


def openai(src: Source) -> str:
    if src.rng.random() < 0.2:
        return "sk-" + _pick(src, _ALNUM, 20) + "T3BlbkFJ" + _pick(src, _ALNUM, 20)
    prefix = src.rng.choice(["sk-proj-", "sk-proj-", "sk-proj-", "sk-svcacct-", "sk-admin-"])
    n = src.rng.choice([58, 74])
    return prefix + _pick(src, _URLSAFE, n) + "T3BlbkFJ" + _pick(src, _URLSAFE, n)


def anthropic(src: Source) -> str:
    prefix = "sk-ant-admin01-" if src.rng.random() < 0.2 else "sk-ant-api03-"
    return prefix + _pick(src, _URLSAFE, 93) + "AA"


def aws_key_id(src: Source) -> str:
    return src.rng.choice(["AKIA", "AKIA", "AKIA", "ASIA"]) + _pick(src, _B32, 16)


def aws_secret(src: Source) -> str:
    return _pick(src, _ALNUM + "+/", 40)


def _base62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _B62[r] + out
    return out.rjust(width, "0")


def github(src: Source) -> str:
    if src.rng.random() < 0.2:
        return "github_pat_" + _pick(src, _ALNUM, 22) + "_" + _pick(src, _ALNUM, 59)
    body = _pick(src, _B62, 30)
    prefix = src.rng.choice(["ghp_", "ghp_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_"])
    return prefix + body + _base62(binascii.crc32(body.encode()), 6)


def github_checksum_ok(token: str) -> bool:
    body, check = token[4:-6], token[-6:]
    return _base62(binascii.crc32(body.encode()), 6) == check


def gitlab(src: Source) -> str:
    return "glpat-" + _pick(src, _URLSAFE, 20)


def slack(src: Source) -> str:
    rng = src.rng
    if rng.random() < 0.5:
        return f"xoxb-{src.digits(13)}-{src.digits(13)}-{_pick(src, _ALNUM, 24)}"
    return f"xoxp-{src.digits(12)}-{src.digits(12)}-{src.digits(13)}-{_pick(src, _HEX, 32)}"


def slack_webhook(src: Source) -> str:
    return (
        "https://hooks.slack.com/services/T"
        + _pick(src, _B32[:26] + "0123456789", 8)
        + "/B"
        + _pick(src, _B32[:26] + "0123456789", 10)
        + "/"
        + _pick(src, _ALNUM, 24)
    )


def stripe(src: Source) -> str:
    prefix = "rk_live_" if src.rng.random() < 0.2 else "sk_live_"
    return prefix + _pick(src, _ALNUM, src.rng.choice([24, 34, 99]))


def google(src: Source) -> str:
    return "AIza" + _pick(src, _URLSAFE, 35)


# --- PEM blocks ---------------------------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    size = (
        bytes([n])
        if n < 128
        else bytes([0x80 | ((n.bit_length() + 7) // 8)])
        + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + size + body


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


_RSA_OID = bytes.fromhex("06092a864886f70d0101010500")  # rsaEncryption, NULL
_EC_OID = bytes.fromhex("06072a8648ce3d0201")  # id-ecPublicKey
_P256_OID = bytes.fromhex("06082a8648ce3d030107")  # prime256v1
_ED25519_OID = bytes.fromhex("06032b6570")


def _odd_bits(src: Source, bits: int) -> int:
    return src.rng.getrandbits(bits) | (1 << (bits - 1)) | 1


def _rsa_pkcs1(src: Source, bits: int) -> bytes:
    half = bits // 2
    n, d = _odd_bits(src, bits), _odd_bits(src, bits - 1)
    p, q, dp, dq, qi = (_odd_bits(src, half) for _ in range(5))
    return _seq(*(_int(v) for v in (0, n, 65537, d, p, q, dp, dq, qi)))


def _pem(label: str, der: bytes, width: int = 64) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + width] for i in range(0, len(body), width)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


def _ssh_str(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def _openssh_ed25519(src: Source) -> bytes:
    seed, pub, check = _bytes(src, 32), _bytes(src, 32), _bytes(src, 4)
    key_type = _ssh_str(b"ssh-ed25519")
    public = key_type + _ssh_str(pub)
    private = check + check + public + _ssh_str(seed + pub) + _ssh_str(b"deploy@build-01")
    private += bytes(range(1, 8 - len(private) % 8 + 1)) if len(private) % 8 else b""
    return (
        b"openssh-key-v1\0"
        + _ssh_str(b"none") * 2
        + _ssh_str(b"")
        + (1).to_bytes(4, "big")
        + _ssh_str(public)
        + _ssh_str(private)
    )


def private_key(src: Source) -> tuple[str, str]:
    """(kind, PEM block) of a private key in one of the encodings people paste."""
    kind = src.rng.choice(["rsa-pkcs1", "rsa-pkcs8", "ec-sec1", "ec-pkcs8", "ed25519", "openssh"])
    if kind == "rsa-pkcs1":
        return kind, _pem("RSA PRIVATE KEY", _rsa_pkcs1(src, src.rng.choice([2048, 4096])))
    if kind == "rsa-pkcs8":
        inner = _rsa_pkcs1(src, 2048)
        return kind, _pem("PRIVATE KEY", _seq(_int(0), _seq(_RSA_OID), _tlv(0x04, inner)))
    scalar = _tlv(0x04, _bytes(src, 32))
    if kind == "ec-sec1":
        return kind, _pem("EC PRIVATE KEY", _seq(_int(1), scalar, _tlv(0xA0, _P256_OID)))
    if kind == "ec-pkcs8":
        inner = _seq(_int(1), scalar)
        algo = _seq(_EC_OID, _P256_OID)
        return kind, _pem("PRIVATE KEY", _seq(_int(0), algo, _tlv(0x04, inner)))
    if kind == "ed25519":
        inner = _tlv(0x04, _bytes(src, 32))
        return kind, _pem("PRIVATE KEY", _seq(_int(0), _seq(_ED25519_OID), _tlv(0x04, inner)))
    return kind, _pem("OPENSSH PRIVATE KEY", _openssh_ed25519(src), width=70)


def public_key(src: Source) -> str:
    """A public key or certificate block: not a secret."""
    kind = src.rng.choice(["ed25519", "rsa", "rsa-pkcs1", "cert", "ssh"])
    if kind == "ed25519":
        spki = _seq(_seq(_ED25519_OID), _tlv(0x03, b"\0" + _bytes(src, 32)))
        return _pem("PUBLIC KEY", spki)
    rsa_pub = _seq(_int(_odd_bits(src, 2048)), _int(65537))
    if kind == "rsa":
        return _pem("PUBLIC KEY", _seq(_seq(_RSA_OID), _tlv(0x03, b"\0" + rsa_pub)))
    if kind == "rsa-pkcs1":
        return _pem("RSA PUBLIC KEY", rsa_pub)
    if kind == "cert":
        tbs = _seq(_tlv(0xA0, _int(2)), _int(src.rng.getrandbits(64)), _tlv(0x04, _bytes(src, 400)))
        return _pem("CERTIFICATE", _seq(tbs, _seq(_RSA_OID), _tlv(0x03, b"\0" + _bytes(src, 256))))
    blob = _ssh_str(b"ssh-ed25519") + _ssh_str(_bytes(src, 32))
    return "ssh-ed25519 " + base64.b64encode(blob).decode() + " ci@build-runner"


# --- JWTs ---------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(src: Source, big: bool = False) -> str:
    fake = src.faker(src.locale())
    now = 1_700_000_000 + src.rng.randint(0, 50_000_000)
    claims: dict[str, object] = {
        "sub": str(src.rng.randint(10**6, 10**9)),
        "name": fake.name(),
        "iat": now,
        "exp": now + 3600,
        "scope": src.rng.choice(["read", "read write", "admin"]),
    }
    if big:
        claims["permissions"] = [f"{fake.word()}:{fake.word()}:{i}" for i in range(400)]
    payload = _b64url(json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode())
    if src.rng.random() < 0.5:
        header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
        mac = hmac.new(_bytes(src, 32), f"{header}.{payload}".encode(), hashlib.sha256)
        return f"{header}.{payload}.{_b64url(mac.digest())}"
    kid = _pick(src, _HEX, 16)
    header = _b64url(f'{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}'.encode())
    return f"{header}.{payload}.{_b64url(_bytes(src, 256))}"


#: Secret kinds: (family name, maker, environment variable people keep it in).
SECRET_KINDS: tuple[tuple[str, Callable[[Source], str], str], ...] = (
    ("openai", openai, "OPENAI_API_KEY"),
    ("anthropic", anthropic, "ANTHROPIC_API_KEY"),
    ("aws-key-id", aws_key_id, "AWS_ACCESS_KEY_ID"),
    ("github", github, "GITHUB_TOKEN"),
    ("gitlab", gitlab, "GITLAB_TOKEN"),
    ("slack", slack, "SLACK_BOT_TOKEN"),
    ("slack-webhook", slack_webhook, "SLACK_WEBHOOK_URL"),
    ("stripe", stripe, "STRIPE_SECRET_KEY"),
    ("google", google, "GOOGLE_API_KEY"),
    ("jwt", jwt, "ACCESS_TOKEN"),
)


# --- look-alikes that are not secrets -----------------------------------------------------

PLACEHOLDERS = (
    "sk-your-key-here", "sk-...", "sk-xxxxxxxxxxxxxxxxxxxxxxxx", "sk-proj-XXXXXXXX",
    "<OPENAI_API_KEY>", "$OPENAI_API_KEY", "${ANTHROPIC_API_KEY}", "YOUR_API_KEY",
    "sk-ant-...", "ghp_xxxxxxxxxxxxxxxxxxxx", "<your-token>", "sk_live_...", "AIza...",
    "xoxb-your-token", "glpat-xxxxxxxx",
)  # fmt: skip


def hash_like(src: Source) -> tuple[str, str]:
    """(family, value) of a digest, id or blob that is not a credential."""
    kind = src.rng.choice(
        ["git-sha", "git-short", "sha256", "docker-digest", "npm-integrity", "base64", "uuid"]
    )
    fake = src.faker("en_US")
    if kind == "git-sha":
        return kind, str(fake.sha1())
    if kind == "git-short":
        return kind, str(fake.sha1())[: src.rng.randint(7, 12)]
    if kind == "sha256":
        return kind, str(fake.sha256())
    if kind == "docker-digest":
        return kind, "sha256:" + str(fake.sha256())
    if kind == "npm-integrity":
        return kind, "sha512-" + base64.b64encode(_bytes(src, 64)).decode()
    if kind == "base64":
        return kind, base64.b64encode(_bytes(src, src.rng.randint(18, 90))).decode()
    return kind, str(fake.uuid4())


def aws_too_short(src: Source) -> str:
    return "AKIA" + _pick(src, _B32, src.rng.randint(6, 12))
