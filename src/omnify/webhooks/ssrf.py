"""SSRF guard for outbound webhooks: where a customer-supplied URL may be sent to.

A webhook URL is attacker-controlled input that makes *our* servers open connections,
so it could aim at the cloud metadata service (169.254.169.254), the database on
10.x, or a port on localhost. Checking the URL when it is saved is not enough: DNS
can change between save and send (or between our check and the HTTP library's own
look-up: DNS rebinding). Hence, at send time:

1. resolve the host once, ourselves;
2. refuse unless *every* address is public (an attacker controls the record set and
   could mix a public address with a private one);
3. connect to the address we checked, keeping the original host name for the
   ``Host`` header and for TLS (SNI and certificate verification), so the HTTP library
   never resolves the name again.

Production also requires https; the development allow-list (``webhook_allowed_hosts``)
lets a developer aim at a receiver on localhost and is ignored in production.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from omnify.webhooks.config import WebhookConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``; injectable so tests can play a hostile DNS server.
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_LENGTH = 2048
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class BlockedDestination(ValueError):
    """The URL may not be called; ``reason`` is safe to show to the endpoint's owner."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """IPv4 addresses smuggled inside IPv6 forms (mapped, 6to4, Teredo, NAT64)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast only: not private, loopback, link-local, shared (CGNAT),
    multicast, reserved, unspecified or documentation space."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d *is* a.b.c.d on a dual-stack socket
            return is_public(ip.ipv4_mapped)
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
        or ip.is_unspecified
    )


_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


def _ipv4_number(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)  # ValueError for 08, 09: not an address
    return int(part, 10)


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address:
    """The IPv4 forms ``inet_aton`` (and so every resolver and browser) accepts besides the
    dotted quad: one to four parts, each decimal, octal (leading 0) or hex (0x), the last
    filling the remaining bytes; ``2852039166``, ``0xA9FEA9FE``, ``0251.0376.0251.0376``
    and ``169.254.43518`` are all 169.254.169.254. (WHATWG URL's IPv4 parser, too.)"""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_LABEL.match(p) for p in parts):
        raise ValueError(f"{host!r} is not an IPv4 address")
    numbers = [_ipv4_number(p) for p in parts]
    last_bits = 8 * (5 - len(numbers))
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 1 << last_bits:
        raise ValueError(f"{host!r} is out of the IPv4 range")
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value |= number << (24 - 8 * index)
    return ipaddress.IPv4Address(value)


def _literal_ip(host: str) -> IPAddress | None:
    """The address a host names literally, in any form the resolver would accept, or None
    for a DNS name. A host whose last label is numeric is an address or is invalid (as in
    the WHATWG URL standard): ``1.2.3.4.5`` never reaches DNS. One parser for the check
    when an endpoint is saved and the one before each send."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
        try:
            return _legacy_ipv4(host.rstrip("."))
        except ValueError:
            raise BlockedDestination(f"The host {host} is neither a valid address nor a host name.") from None
    return None


def parse_url(url: str, config: WebhookConfig) -> httpx.URL:
    """Checks that need no DNS: run when an endpoint is saved and again before each send."""
    if len(url) > MAX_URL_LENGTH:
        raise BlockedDestination(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise BlockedDestination(f"The URL is not valid: {exc}.") from None
    if parsed.scheme not in ("http", "https"):
        raise BlockedDestination("The URL must start with https:// (or http:// in development).")
    if config.production and parsed.scheme != "https":
        raise BlockedDestination("Webhook URLs must use https.")
    host = parsed.host.lower().rstrip(".")
    if not host:
        raise BlockedDestination("The URL has no host.")
    if parsed.userinfo:
        raise BlockedDestination("Credentials in the URL are not allowed; sign requests with the endpoint secret.")
    if parsed.fragment:
        raise BlockedDestination("The URL must not contain a #fragment.")
    if config.host_allowed(host):
        return parsed
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        raise BlockedDestination("The URL points at this machine (localhost).")
    literal = _literal_ip(host)
    if literal is not None and not is_public(literal):
        raise BlockedDestination(f"The URL points at a non-public address ({literal}).")
    return parsed


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    """Where to connect (``url`` holds the checked IP) and who we say we talk to."""

    url: httpx.URL
    host_header: str
    sni_hostname: str | None
    ip: str


async def resolve_targets(
    url: str, config: WebhookConfig, resolver: Resolver | None = None
) -> list[PinnedTarget]:
    """Resolve once, check every address, and pin the request to the checked ones."""
    parsed = parse_url(url, config)
    host = parsed.raw_host.decode("ascii").strip("[]")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    allowed = config.host_allowed(parsed.host.lower().rstrip("."))
    literal = _literal_ip(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await (resolver or system_resolver)(host, port)
        except (OSError, UnicodeError) as exc:
            raise BlockedDestination(f"The host name {host} does not resolve ({exc.__class__.__name__}).") from None
        if not addresses:
            raise BlockedDestination(f"The host name {host} does not resolve.")
    checked: list[IPAddress] = []
    for address in addresses:
        ip = _literal_ip(address)
        if ip is None:
            raise BlockedDestination(f"The host name {host} resolved to something that is not an address.")
        if not allowed and not is_public(ip):
            raise BlockedDestination(f"The host name {host} resolves to a non-public address ({ip}).")
        checked.append(ip)
    host_header = parsed.netloc.decode("ascii")
    sni = host if parsed.scheme == "https" and literal is None else None
    return [PinnedTarget(url=parsed.copy_with(host=str(ip)), host_header=host_header, sni_hostname=sni, ip=str(ip))
            for ip in checked]
