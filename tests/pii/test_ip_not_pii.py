"""IP addresses that name no one are not PII: loopback, documentation, versions, and so on."""

from __future__ import annotations

import pytest

from ironrt.pii import find_pii
from ironrt.pii.ips import NEVER, PRIVATE, PUBLIC, ipv4_class, ipv6_class
from ironrt.pii.rules import Rules
from ironrt.policies.pii import PiiPolicy
from ironrt.testing import tflow

NO_PRIVATE = Rules(private_ips=False)


def ips(text: str, rules: Rules | None = None) -> list[str]:
    found = find_pii(text) if rules is None else find_pii(text, rules=rules)
    return [f.value for f in found if f.type == "IP"]


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1",
        "127.1.2.3",
        "0.0.0.0",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.42",
        "224.0.0.251",
        "239.255.255.250",
        "255.255.255.255",
        "240.1.2.3",
        "::1",
        "::",
        "0:0:0:0:0:0:0:1",
        "2001:db8::1",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:192.0.2.1",
    ],
)
def test_addresses_that_name_no_one_are_never_findings(value: str) -> None:
    text = f"the service listens on {value}, port 8080"
    assert ips(text) == []
    assert ips(text, NO_PRIVATE) == []


@pytest.mark.parametrize(
    "text",
    [
        "version 10.0.0.1",
        "Version: 8.8.4.4",
        "ver. 81.2.69.160",
        "v 1.2.3.4",
        "v1.2.3.4",
        "release 2.0.0.1",
        "build=81.2.69.160",
        "firmware 4.2.1.7",
        "Chrome/120.0.6099.109",
        "Mozilla/5.0 Chrome/120.0.0.1 Safari/537.36",
        "1.2.3.4-beta",
        "81.2.69.160-rc1 is out",
        '[assembly: AssemblyVersion("4.15.17.18")]',
        '{"version": "81.2.69.160"}',
        "VERSION=81.2.69.160",
    ],
)
def test_version_strings_are_not_addresses(text: str) -> None:
    assert ips(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "http://81.2.69.160/login",  # `//` is a URL, not a product token
        "the version I saw came from 81.2.69.160",  # the word is not right before it
        "81.2.69.160-81.2.69.170",
        "hosts 1.2.3.4 and 8.8.8.8",
        'host: "81.2.69.160"',
        "the server (81.2.69.160) is down",
    ],
)
def test_public_addresses_near_version_like_text_are_still_found(text: str) -> None:
    assert ips(text)


@pytest.mark.parametrize(
    "value",
    [
        "10.1.2.3",
        "172.16.0.9",
        "172.31.255.1",
        "192.168.1.1",
        "100.64.3.4",
        "169.254.169.254",
        "fe80::1ff:fe23:4567:890a",
        "fd12:3456:789a::1",
        "fc00::7",
        "::ffff:10.0.0.1",
    ],
)
def test_private_addresses_follow_the_rules(value: str) -> None:
    text = f"login from {value} detected"
    assert ips(text) == [value]  # default: private_ips=True
    assert ips(text, Rules(private_ips=True)) == [value]
    assert ips(text, NO_PRIVATE) == []


@pytest.mark.parametrize(
    "value",
    [
        "8.8.8.8",
        "81.2.69.160",
        "172.32.0.1",  # just outside 172.16/12
        "100.128.0.1",  # just outside 100.64/10
        "2a00:1450:4001:81a::200e",
        "2001:db9::1",  # just outside 2001:db8::/32
        "::ffff:81.2.69.160",
    ],
)
def test_public_addresses_are_findings_whatever_the_rules(value: str) -> None:
    text = f"login from {value} detected"
    assert ips(text) == [value]
    assert ips(text, NO_PRIVATE) == [value]


def test_classes() -> None:
    assert ipv4_class("127.0.0.1") == NEVER
    assert ipv4_class("10.0.0.1") == PRIVATE
    assert ipv4_class("8.8.8.8") == PUBLIC
    assert ipv4_class("172.15.255.255") == PUBLIC
    assert ipv6_class("::ffff:10.0.0.1") == PRIVATE
    assert ipv6_class("2001:db8:ffff::1") == NEVER
    assert ipv6_class("febf::1") == PRIVATE  # still fe80::/10
    assert ipv6_class("fec0::1") == PUBLIC
    assert ipv6_class("12:30:45") is None


def test_block_mode_lets_loopback_and_versions_through_and_blocks_a_public_address() -> None:
    def refused(text: str) -> bool:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
        flow = tflow(body=body, pii="block")
        PiiPolicy().request(flow)
        return flow.refusal is not None

    assert not refused("curl http://127.0.0.1:8080/health and ping ::1")
    assert not refused("upgrade to version 10.0.0.1, docs use 192.0.2.10")
    assert refused("the attacker came from 81.2.69.160")
