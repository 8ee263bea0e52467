"""Which IP addresses are personal data: a public address can point at a person; some never do.

Loopback (`127.0.0.1`, `::1`), the unspecified address, the documentation ranges
(RFC 5737, RFC 3849), multicast, broadcast and the reserved 240/4 name no one, so they are
never findings: blocking a prompt for `127.0.0.1` only breaks the agent. Private ranges
(RFC 1918, CGNAT 100.64/10, link-local, unique-local fc00::/7) point inside a network,
which some homes treat as sensitive and others do not: `Rules.private_ips` says which. An
IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is read as the IPv4 address it carries.

A dotted quad is also how versions are written (`version 10.0.0.1`, `Chrome/120.0.0.1`,
`1.2.3.4-beta`): `version_before` reads the word before a candidate, which is what tells
them apart. Verdicts are cached per address, like the other validators': the same addresses
come back every turn of a conversation.
"""

from __future__ import annotations

import functools
import ipaddress

__all__ = ["NEVER", "PRIVATE", "PUBLIC", "ipv4_class", "ipv6_class", "version_before"]

#: Never personal data, whatever the rules.
NEVER = 0
#: In a private range: a finding only when `Rules.private_ips` is set.
PRIVATE = 1
#: Anything else: a finding.
PUBLIC = 2

# (network as an int, prefix length) per class. Ordered by how often prose holds them.
_V4_NEVER = (
    (0x7F000000, 8),  # 127/8 loopback
    (0x00000000, 8),  # 0/8 "this network", 0.0.0.0 unspecified
    (0xC0000200, 24),  # 192.0.2/24 TEST-NET-1
    (0xC6336400, 24),  # 198.51.100/24 TEST-NET-2
    (0xCB007100, 24),  # 203.0.113/24 TEST-NET-3
    (0xE0000000, 4),  # 224/4 multicast
    (0xF0000000, 4),  # 240/4 reserved, 255.255.255.255 broadcast
)
_V4_PRIVATE = (
    (0x0A000000, 8),  # 10/8
    (0xC0A80000, 16),  # 192.168/16
    (0xAC100000, 12),  # 172.16/12
    (0x64400000, 10),  # 100.64/10 carrier-grade NAT
    (0xA9FE0000, 16),  # 169.254/16 link-local
)
_V6_NEVER = (
    (0x20010DB8 << 96, 32),  # 2001:db8::/32 documentation
    (0xFF << 120, 8),  # ff00::/8 multicast
)
_V6_PRIVATE = (
    (0xFE80 << 112, 10),  # fe80::/10 link-local
    (0xFC << 120, 7),  # fc00::/7 unique local
)


def _within(value: int, nets: tuple[tuple[int, int], ...], bits: int) -> bool:
    return any(value >> (bits - n) == net >> (bits - n) for net, n in nets)


def _v4(value: int) -> int:
    if _within(value, _V4_NEVER, 32):
        return NEVER
    return PRIVATE if _within(value, _V4_PRIVATE, 32) else PUBLIC


@functools.lru_cache(maxsize=4096)
def ipv4_class(dotted: str) -> int:
    """`NEVER`, `PRIVATE` or `PUBLIC` for a dotted quad already checked by `ipv4_ok`."""
    a, b, c, d = map(int, dotted.split("."))
    return _v4(a << 24 | b << 16 | c << 8 | d)


@functools.lru_cache(maxsize=4096)
def ipv6_class(candidate: str) -> int | None:
    """`NEVER`, `PRIVATE` or `PUBLIC`; None if `candidate` is not an IPv6 address."""
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    mapped = address.ipv4_mapped
    if mapped is not None:
        return _v4(int(mapped))
    value = int(address)
    if value <= 1 or _within(value, _V6_NEVER, 128):  # `::` and `::1`
        return NEVER
    return PRIVATE if _within(value, _V6_PRIVATE, 128) else PUBLIC


#: How far back the word saying "version" may start.
_VERSION_WINDOW = 32
#: Words ending so name a version (`version`, `AssemblyVersion`, `build`), and the short
#: ones that must stand alone (`v`, `ver`).
_VERSION_WORDS = ("version", "release", "build", "revision", "firmware")
_VERSION_SHORT = frozenset({"v", "ver", "vers", "rel", "rev", "fw"})
#: What may stand between the word and the candidate (`version: "`, `Version("`).
_VERSION_SEPARATORS = " \t:=#(\"'"
_VERSION_END = frozenset(_VERSION_SEPARATORS + "/")
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_TOKEN = _LETTERS + "0123456789.-"


def version_before(text: str, start: int) -> bool:
    """Whether the dotted quad at `text[start:]` is introduced as a version.

    A version word (`version 10.0.0.1`, `build: 1.2.3.4`, `v 1.2.3.4`, `"version": "...`,
    `AssemblyVersion("...`) or a product token (`Chrome/120.0.0.1`, not the `//` of a URL)
    right before it. Read with `rstrip`, in C: a regex searched over the window would try
    every word at every position.
    """
    if start == 0 or text[start - 1] not in _VERSION_END:
        return False
    window = text[start - _VERSION_WINDOW if start > _VERSION_WINDOW else 0 : start]
    if window[-1] == "/":
        before = window[:-1]
        token = before[len(before.rstrip(_TOKEN)) :]
        edge = before[-len(token) - 1 : -len(token)] if token else ""
        return token[:1].isalpha() and edge != "/"
    stripped = window.rstrip(_VERSION_SEPARATORS)
    if len(window) - len(stripped) > 4:
        return False
    stripped = stripped.removesuffix(".")
    word = stripped[len(stripped.rstrip(_LETTERS)) :].lower()
    return word in _VERSION_SHORT or word.endswith(_VERSION_WORDS)
