"""The SSRF guard's address classification and URL rules (no network)."""

from __future__ import annotations

import ipaddress

import pytest

from omnify.webhooks.config import WebhookConfig
from omnify.webhooks.ssrf import BlockedDestination, is_public, parse_url, resolve_targets

PROD = WebhookConfig(production=True)
DEV = WebhookConfig(allowed_hosts=frozenset({"localhost", "127.0.0.1", "hooks.internal"}))


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "255.255.255.255", "224.0.0.1", "240.0.0.1", "192.0.2.10", "198.51.100.7", "203.0.113.9",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "2002:7f00:1::1", "64:ff9b::a00:1", "2001:db8::1",
])
def test_non_public_addresses(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111",
                                     "2a00:1450:4001:80b::200e", "::ffff:93.184.216.34"])
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("url,message", [
    ("http://hooks.example.com/x", "must use https"),
    ("ftp://hooks.example.com/x", "must start with https"),
    ("https://user:pass@hooks.example.com/x", "Credentials"),
    ("https://hooks.example.com/x#frag", "fragment"),
    ("https://localhost/x", "localhost"),
    ("https://api.localhost/x", "localhost"),
    ("https://127.0.0.1/x", "non-public"),
    ("https://[::1]/x", "non-public"),
    ("https://169.254.169.254/latest/meta-data/", "non-public"),
    # the other spellings of an IPv4 address that resolvers accept (inet_aton, WHATWG URL)
    ("https://2852039166/latest/meta-data/", r"non-public address \(169\.254\.169\.254\)"),
    ("https://0xA9FEA9FE/", r"non-public address \(169\.254\.169\.254\)"),
    ("https://0xa9.0xfe.0xa9.0xfe/", r"non-public address \(169\.254\.169\.254\)"),
    ("https://169.254.43518/", r"non-public address \(169\.254\.169\.254\)"),
    ("https://169.16689662/", r"non-public address \(169\.254\.169\.254\)"),
    ("https://127.1:8080/", r"non-public address \(127\.0\.0\.1\)"),
    ("https://017700000001/", r"non-public address \(127\.0\.0\.1\)"),
    ("https://0x7f.1/", r"non-public address \(127\.0\.0\.1\)"),
    ("https://012.0.0.1/", "not valid"),  # httpx refuses zero-padded dotted quads itself
    ("https://0/", "non-public"),
    ("https://1.2.3.4.5/", "neither a valid address"),
    ("https://4294967296/", "neither a valid address"),
    ("https://08.1.1.1/", "not valid"),
    ("https://hooks.example.123/", "neither a valid address"),
    ("https://" + "a" * 2050 + ".com/", "longer than"),
    ("https:///nohost", "no host"),
])
def test_production_url_rules(url: str, message: str) -> None:
    with pytest.raises(BlockedDestination, match=message):
        parse_url(url, PROD)


def test_numeric_forms_of_public_addresses_are_normalised() -> None:
    from omnify.webhooks.ssrf import _literal_ip

    assert str(_literal_ip("134744072")) == "8.8.8.8"
    assert str(_literal_ip("0x08.0x08.0x0808")) == "8.8.8.8"
    assert _literal_ip("3com.example") is None
    assert _literal_ip("hooks.example.com") is None


def test_allow_list_is_for_development_only() -> None:
    assert parse_url("http://localhost:8080/hook", DEV).host == "localhost"
    assert parse_url("http://127.0.0.1:8080/hook", DEV).port == 8080
    assert parse_url("https://hooks.example.com/x", PROD).host == "hooks.example.com"
    prod_with_list = WebhookConfig(production=True, allowed_hosts=frozenset({"localhost"}))
    with pytest.raises(BlockedDestination):
        parse_url("https://localhost/x", prod_with_list)
    with pytest.raises(BlockedDestination):  # development without the allow-list
        parse_url("http://127.0.0.1/x", WebhookConfig())


def _resolver(answer: list[str]):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answer

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def test_every_resolved_address_must_be_public() -> None:
    with pytest.raises(BlockedDestination, match=r"non-public address \(10.0.0.5\)"):
        await resolve_targets("https://hooks.example.com/x", PROD, _resolver(["93.184.216.34", "10.0.0.5"]))
    with pytest.raises(BlockedDestination, match="does not resolve"):
        await resolve_targets("https://hooks.example.com/x", PROD, _resolver([]))


async def test_targets_are_pinned_to_the_checked_addresses() -> None:
    resolver = _resolver(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
    targets = await resolve_targets("https://Hooks.Example.com:8443/in?x=1", PROD, resolver)
    assert resolver.calls == ["hooks.example.com"]  # resolved exactly once
    assert [str(t.url) for t in targets] == ["https://93.184.216.34:8443/in?x=1",
                                            "https://[2606:2800:220:1:248:1893:25c8:1946]:8443/in?x=1"]
    assert {t.host_header for t in targets} == {"hooks.example.com:8443"}
    assert {t.sni_hostname for t in targets} == {"hooks.example.com"}


async def test_idn_hosts_use_their_ascii_form() -> None:
    targets = await resolve_targets("https://bücher.example/x", PROD, _resolver(["93.184.216.34"]))
    assert targets[0].sni_hostname == "xn--bcher-kva.example" and targets[0].host_header == "xn--bcher-kva.example"


async def test_literal_public_ip_needs_no_dns() -> None:
    targets = await resolve_targets("https://93.184.216.34/x", PROD, _resolver(["10.0.0.1"]))
    assert targets[0].ip == "93.184.216.34" and targets[0].sni_hostname is None


async def test_allowed_host_may_resolve_privately_in_development() -> None:
    targets = await resolve_targets("http://hooks.internal:9000/x", DEV, _resolver(["10.1.2.3"]))
    assert targets[0].ip == "10.1.2.3" and targets[0].host_header == "hooks.internal:9000"
