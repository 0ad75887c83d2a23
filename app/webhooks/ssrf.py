"""Where a webhook may point (server-side request forgery): public addresses only.

A URL is http(s) without credentials; its host, an address or a name, must resolve only to global
unicast addresses: never loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local
(169.254/16 with the cloud metadata address 169.254.169.254, fe80::/10), shared (100.64/10),
multicast, reserved or unspecified ones, nor IPv4 ones wrapped in IPv6. WEBHOOK_ALLOW_PRIVATE=true
lifts this (tests, closed networks). Checked when the webhook is created or changed (422) and
again before every delivery, which then connects to the address just checked (so a name that
re-resolves elsewhere, DNS rebinding, cannot move the request).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """The URL is not one a webhook may be sent to (the message says why)."""


def is_public(ip: IpAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def parts(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL shape."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https"):
        raise UnsafeUrl("the URL must be http or https")
    if split.username or split.password:
        raise UnsafeUrl("the URL must not carry credentials")
    if not split.hostname:
        raise UnsafeUrl("the URL has no host")
    try:
        port = split.port or (443 if split.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl("the URL's port is not valid") from exc
    return split.scheme, split.hostname, port


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """An address of `host` to connect to, every address it resolves to having been checked."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"the host {host!r} does not resolve") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise UnsafeUrl(f"the host {host!r} does not resolve")
    if not allow_private:
        refused = [ip for ip in addresses if not is_public(ip)]
        if refused:
            raise UnsafeUrl(
                f"the host {host!r} resolves to a non-public address ({refused[0]}): loopback, private, "
                "link-local and metadata addresses are refused (WEBHOOK_ALLOW_PRIVATE)"
            )
    return str(addresses[0])


def check(url: str, *, allow_private: bool) -> None:
    _scheme, host, port = parts(url)
    resolve(host, port, allow_private=allow_private)
