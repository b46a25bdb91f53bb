"""Result URLs are fetched only from public addresses (server-side request forgery guard).

A gateway's image result may be a URL the bot then downloads. Unless it is on the configured gateway's
own origin (scheme, host and port of its ``base_url``: that *is* the gateway, trusted like its API, so an
operator's gateway on a private address and the emulators on 127.0.0.1 keep working), the URL must be
``http``/``https`` and its host must resolve only to public addresses: loopback, private (10/8, 172.16/12,
192.168/16), link-local (169.254/16, fe80::/10; the cloud metadata service 169.254.169.254), unique-local
(fc00::/7, AWS's fd00:ec2::254), carrier-grade NAT, multicast, reserved and unspecified addresses are
refused, also when wrapped in an IPv4-mapped IPv6 address.

The check runs in the resolver of the download session's connector (``PublicOnlyResolver``), so the
address checked is the very one connected to (no DNS rebinding between check and connect); an IP-literal
host, which aiohttp does not resolve, is checked by ``check_url`` before the request. Redirects are
followed by the caller one hop at a time, each hop checked again.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from .errors import GatewayError

__all__ = ["NonPublicAddress", "PublicOnlyResolver", "UnsafeURL", "check_url", "is_public_address",
           "public_only_connector", "unsafe_from"]

SCHEMES = frozenset({"http", "https"})
#: addresses Python's ``is_global`` may not flag on every version, refused by name (cloud metadata)
_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
                       ipaddress.ip_address("100.100.100.200")})


class UnsafeURL(GatewayError):
    """A result URL the bot will not fetch: not http(s), or pointing at a non-public address."""

    default_message = "result URL refused"

    def __init__(self, message: str, *, reason: str, host: str = "", profile: str | None = None) -> None:
        super().__init__(message, code="unsafe_url", profile=profile)
        self.reason = reason
        self.host = host
        self.request_sent = False

    def user_message(self) -> str:
        return (f"The AI gateway sent its result as a link I won't open ({self.reason}), so I couldn't get the "
                "image. Try again; if it keeps happening, whoever runs the bot should check the gateway.")


def is_public_address(address: str) -> bool:
    """Whether ``address`` (an IP literal) is a public, globally routed unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    if ip in _METADATA:
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback
                                 or ip.is_link_local or ip.is_private)


def _reason(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    return "a private or reserved network address"


def check_url(url: str, *, profile: str | None = None) -> str:
    """The URL's host when ``url`` is http(s) and its host is a name or a public IP literal; raises
    ``UnsafeURL`` otherwise. (Names are checked when they are resolved, by ``PublicOnlyResolver``.)"""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise UnsafeURL(f"malformed result URL {url[:80]!r}", reason="a malformed URL", profile=profile) from None
    if parts.scheme.lower() not in SCHEMES:
        scheme = parts.scheme or "no"
        raise UnsafeURL(f"result URL with scheme {scheme!r} refused", reason=f"a {scheme}: URL, not http(s)",
                        profile=profile)
    if not host:
        raise UnsafeURL("result URL without a host refused", reason="a URL without a host", profile=profile)
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # a name: checked on resolution
    if not is_public_address(host):
        raise UnsafeURL(f"result URL on {host} refused", reason=_reason(host), host=host, profile=profile)
    return host


class NonPublicAddress(OSError):
    """Raised by the resolver (an OSError, as aiohttp expects of one): ``host`` resolves to ``address``.
    aiohttp hands it back as ``ClientConnectorError.os_error``; ``unsafe_from`` turns it into ``UnsafeURL``."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {_reason(address)} ({address})")
        self.host = host
        self.address = address


def unsafe_from(exc: BaseException, *, profile: str | None = None) -> UnsafeURL | None:
    """The ``UnsafeURL`` behind an aiohttp connection error raised by ``PublicOnlyResolver`` (else None)."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, NonPublicAddress):
        return UnsafeURL(str(os_error), reason=f"{os_error.host} is {_reason(os_error.address)}",
                         host=os_error.host, profile=profile)
    return None


class PublicOnlyResolver(AbstractResolver):
    """Resolves with ``inner`` (aiohttp's default resolver) and refuses a name any of whose addresses is
    not public: the connector then connects only to addresses checked here."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            address = str(result["host"])
            if not is_public_address(address):
                raise NonPublicAddress(host, address)
        return results

    async def close(self) -> None:
        await self._inner.close()


def public_only_connector(**kwargs: Any) -> aiohttp.TCPConnector:
    """A connector that reaches only public addresses (see ``PublicOnlyResolver``); no DNS cache to poison."""
    return aiohttp.TCPConnector(resolver=PublicOnlyResolver(), use_dns_cache=False, **kwargs)
