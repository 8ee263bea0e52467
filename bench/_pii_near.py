"""Near-misses for the independent PII corpus: text that looks like PII and is none of it.

Each maker returns (family, phrase): the look-alike in the context that makes it what it is
("Order #100234567", "version 10.0.0.1", a public key block). The message around it is
filler with no cue word (`Source.sentence`), so nothing else in it is PII either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import _pii_secrets as sec
from _pii_values import (
    Source,
    card_grouped,
    grouped4,
    iban_broken,
    luhn_broken,
    ssn,
    ssn_never_issued,
)

#: Contexts for a bare number that make it no phone and no SSN ("Batch 4155552671").
NEUTRAL = (
    "Ref. {v}", "Batch {v} was processed.", "Code {v}", "Item {v} is out of stock.",
    "Lot {v}", "Serial {v}", "Ticket {v} closed.", "{v}", "Build {v} passed.",
    "Job {v} finished in 3 s.",
)  # fmt: skip


def neutral(src: Source, value: str) -> str:
    return src.rng.choice(NEUTRAL).format(v=value)


def ssn_bare(src: Source) -> tuple[str, str]:
    a, g, s = ssn(src)
    return "ssn-bare-no-cue", neutral(src, f"{a:03d}{g:02d}{s:04d}")


def ssn_bad(src: Source) -> tuple[str, str]:
    a, g, s = ssn_never_issued(src)
    sep = src.rng.choice(["-", " "])
    return "ssn-never-issued", neutral(src, f"{a:03d}{sep}{g:02d}{sep}{s:04d}")


def card_bad(src: Source) -> tuple[str, str]:
    number = luhn_broken(src)
    value = src.rng.choice([number, card_grouped(number, " "), card_grouped(number, "-")])
    return "card-luhn-fail", neutral(src, value)


def iban_bad(src: Source) -> tuple[str, str]:
    value = iban_broken(src, src.rng.choice(["de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "en_GB"]))
    return "iban-bad-check", neutral(src, src.rng.choice([value, grouped4(value)]))


def _octets(src: Source, n: int = 4, top: int = 255) -> str:
    return ".".join(str(src.rng.randint(0, top)) for _ in range(n))


def ip_special(src: Source) -> tuple[str, str]:
    rng = src.rng
    kind = rng.choice(["loopback", "unspecified", "doc-v4", "doc-v6", "netmask", "broadcast"])
    if kind == "loopback":
        v = rng.choice(["127.0.0.1", f"127.0.{rng.randint(0, 9)}.{rng.randint(1, 9)}", "::1"])
        host = f"[{v}]" if ":" in v else v  # IPv6 in a URL or before a port: bracketed
        return "ip-loopback", rng.choice(
            [f"listening on {host}:8000", f"curl http://{host}:8000/health", f"bind {v}",
             f"localhost ({v})"]
        )  # fmt: skip
    if kind == "unspecified":
        v = rng.choice(["0.0.0.0", "::", "0.0.0.0:8080"])
        return "ip-unspecified", f"uvicorn app:main --host {v}"
    if kind == "doc-v4":
        net = rng.choice(["192.0.2", "198.51.100", "203.0.113"])
        return "ip-documentation", f"e.g. {net}.{rng.randint(1, 254)} in the docs"
    if kind == "doc-v6":
        addr = ipaddress.ip_address(0x20010DB8 << 96 | rng.getrandbits(64))
        return "ip-documentation", f"example address {addr.compressed}"
    if kind == "netmask":
        return "ip-netmask", rng.choice(["netmask 255.255.255.0", "mask 255.255.0.0"])
    return "ip-netmask", "broadcast 255.255.255.255"


def ip_version(src: Source) -> tuple[str, str]:
    rng = src.rng
    small = _octets(src, 4, 20)
    return "ip-version-string", rng.choice(
        [
            f"version {rng.choice(['10.0.0.1', small])}",
            f"v{small}",
            f"firmware {small} is out",
            f'[assembly: AssemblyVersion("{small}")]',
            f"Mozilla/5.0 (X11; Linux x86_64) Chrome/{rng.randint(100, 130)}.0."
            f"{rng.randint(4000, 6999)}.{rng.randint(10, 250)} Safari/537.36",
            f"build {rng.randint(6, 10)}.{rng.randint(0, 3)}.{rng.randint(7000, 22631)}."
            f"{rng.randint(100, 3000)}",
        ]
    )


def ip_lookalike(src: Source) -> tuple[str, str]:
    rng = src.rng
    fake = src.faker("en_US")
    kind = rng.choice(["mac", "date", "oid", "scope"])
    if kind == "mac":
        mac = str(fake.mac_address())
        return "ip-mac-address", rng.choice([mac, mac.upper().replace(":", "-")]) + " (eth0)"
    if kind == "date":
        d = src.when()
        return "ip-dotted-date", rng.choice([d.strftime("%d.%m.%Y"), d.strftime("%Y.%m.%d")])
    if kind == "oid":
        return "ip-oid", "OID 1.3.6.1.4.1." + ".".join(str(rng.randint(1, 999)) for _ in range(3))
    return "ip-code-scope", rng.choice(
        ["std::vector<int> v;", "let v = Vec::<u8>::new();", "Foo::Bar::baz()", "a::b::c"]
    )


def secret_lookalike(src: Source) -> tuple[str, str]:
    rng = src.rng
    kind = rng.choice(["placeholder", "placeholder", "aws-short", "public-key", "hash", "hash"])
    if kind == "placeholder":
        env = rng.choice(["OPENAI_API_KEY", "API_KEY", "TOKEN", "GITHUB_TOKEN"])
        return "secret-placeholder", f"{env}={rng.choice(sec.PLACEHOLDERS)}"
    if kind == "aws-short":
        return "secret-aws-too-short", f"prefix {sec.aws_too_short(src)} is truncated"
    if kind == "public-key":
        return "secret-public-key", sec.public_key(src)
    family, value = sec.hash_like(src)
    return f"secret-{family}", value


def ids(src: Source) -> tuple[str, str]:
    rng = src.rng
    fake = src.faker("en_US")
    kind = rng.choice(["order", "isbn", "ean", "uuid", "tracking", "invoice", "swift"])
    if kind == "order":
        return "order-id", rng.choice(
            [
                f"Order #{rng.randint(100_000_000, 999_999_999)}",
                f"ORD-{rng.randint(2019, 2025)}-{rng.randint(0, 999_999):06d}",
                f"order {src.digits(3)}-{src.digits(7)}-{src.digits(7)}",
                f"PO-{rng.randint(100_000, 999_999)}",
            ]
        )
    if kind == "isbn":
        isbn = rng.choice([fake.isbn10(), fake.isbn13()])
        return "isbn", rng.choice([f"ISBN {isbn}", f"ISBN {isbn.replace('-', '')}"])
    if kind == "ean":
        return "ean-barcode", f"EAN {rng.choice([fake.ean13(), fake.ean8()])}"
    if kind == "uuid":
        return "uuid", rng.choice([str(fake.uuid4()), str(fake.uuid4()).upper()])
    if kind == "tracking":
        usps = "9400" + src.digits(18)
        return "tracking-number", rng.choice(
            [
                f"UPS 1Z{sec._pick(src, 'ABCDEFGHJKLMNPQRSTUVWXYZ0123456789', 6)}{src.digits(10)}",
                f"USPS {grouped4(usps)}",
                f"USPS {usps}",
                f"FedEx {src.digits(12)}",
                f"Royal Mail {sec._pick(src, 'ABCDEFGHJKLMNPRSTUVWXYZ', 2)}{src.digits(9)}GB",
            ]
        )
    if kind == "invoice":
        return "invoice-id", rng.choice(
            [f"INV-{rng.randint(2019, 2025)}-{src.digits(5)}", f"Rechnung Nr. {src.digits(8)}"]
        )
    return "swift-bic", f"BIC {fake.swift()}"


def times(src: Source) -> tuple[str, str]:
    rng = src.rng
    dt = src.when().replace(microsecond=src.rng.randint(0, 999_999))
    kind = rng.choice(["date", "date", "time", "unix", "unix-ms"])
    if kind == "date":
        fmt = rng.choice(
            [
                "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%B %d, %Y", "%d %b %Y",
                "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "%Y%m%d", "%a, %d %b %Y %H:%M:%S +0000",
                "%Y/%m/%d", "%Y年%m月%d日",
            ]
        )  # fmt: skip
        return "date", dt.strftime(fmt)
    if kind == "time":
        return "time", dt.strftime(rng.choice(["%H:%M", "%H:%M:%S", "%I:%M %p", "%H:%M:%S.%f"]))
    stamp = rng.randint(1_500_000_000, 1_800_000_000)
    if kind == "unix":
        return "timestamp", f"ts={stamp}"
    return "timestamp", f'"created_ms": {stamp}{src.digits(3)}'


def numbers(src: Source) -> tuple[str, str]:
    rng = src.rng
    locale = src.locale()
    fake = src.faker(locale)
    kind = rng.choice(["semver", "price", "zip4", "coords", "count", "address"])
    if kind == "semver":
        a, b, c = rng.randint(0, 30), rng.randint(0, 40), rng.randint(0, 200)
        return "semver", rng.choice(
            [f"{a}.{b}.{c}", f"v{a}.{b}.{c}-rc.{rng.randint(1, 5)}", f"^{a}.{b}.{c}",
             f"requests=={a}.{b}.{c}", f"node v{a}.{b}.{c}"]
        )  # fmt: skip
    if kind == "price":
        tag = str(fake.pricetag()) if hasattr(fake, "pricetag") else "$1,299.00"
        return "price", rng.choice([tag, f"USD {rng.randint(1000, 9_999_999):,}.00"])
    if kind == "zip4":
        return "zip-plus-4", f"{src.faker('en_US').city()}, {src.faker('en_US').zipcode_plus4()}"
    if kind == "coords":
        return "coordinates", f"{fake.latitude():.4f}, {fake.longitude():.4f}"
    if kind == "count":
        return "count", rng.choice(
            [f"{rng.randint(10**6, 10**9):,} rows", f"{rng.randint(1, 999)}.{src.digits(2)} GB"]
        )
    return "address", str(fake.address()).replace("\n", ", ")


def email_lookalike(src: Source) -> tuple[str, str]:
    rng = src.rng
    user = src.faker("en_US").user_name()
    return "email-lookalike", rng.choice(
        [
            f"thanks @{user} for the review",
            f"npm i @{user}/utils@{rng.randint(1, 9)}.{rng.randint(0, 9)}.0",
            "@app.route('/users/<int:uid>')",
            f"icon@{rng.randint(2, 3)}x.png",
            f"docker pull nginx@sha256:{src.faker('en_US').sha256()}",
        ]
    )


#: Near-miss makers and how many messages each makes (the phone ones come from the phone
#: section, which makes the bare digit runs).
NEAR_MAKERS: tuple[tuple[Callable[[Source], tuple[str, str]], int], ...] = (
    (ssn_bare, 60),
    (ssn_bad, 60),
    (card_bad, 70),
    (iban_bad, 70),
    (ip_special, 110),
    (ip_version, 60),
    (ip_lookalike, 80),
    (secret_lookalike, 160),
    (ids, 180),
    (times, 110),
    (numbers, 120),
    (email_lookalike, 40),
)
