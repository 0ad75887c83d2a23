"""Web origins (`scheme://host[:port]`), as a browser sends them in `Origin`: a campaign's
`conversion_origins`, the pages allowed to post its conversions (docs/conversions.md).

Normalized so that one origin has one spelling: scheme and host lowercased, the default port
(80 for http, 443 for https) dropped. Only http and https; no userinfo, path, query or fragment;
hosts are ASCII names (IDNA: the punycode a browser sends), IPv4 or bracketed IPv6 addresses.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

MAX_ORIGINS = 20
ORIGIN_MAX = 300
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGIN = re.compile(r"(?P<scheme>[a-z]+)://(?P<host>\[[0-9a-f:.]+\]|[^\[\]/?#@:\\]+)(?::(?P<port>[0-9]{1,5}))?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _host(host: str) -> str | None:
    """The host's one spelling, or None when it is not a host name or address."""
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    host = host.removesuffix(".")
    labels = host.split(".") if len(host) <= 253 else []
    return host if labels and all(_LABEL.fullmatch(label) for label in labels) else None


def normalize_origin(value: str) -> str:
    """The origin's one spelling; ValueError when it is not an http(s) origin."""
    match = _ORIGIN.fullmatch(value.strip().lower())
    host = _host(match["host"]) if match is not None else None
    if match is None or host is None or match["scheme"] not in _DEFAULT_PORTS:
        raise ValueError("an origin is scheme://host[:port] (http or https; no path, query or user)")
    scheme, port = match["scheme"], match["port"]
    if port is not None:
        number = int(port)
        if not 1 <= number <= 65535:
            raise ValueError("port out of range")
        port = None if number == _DEFAULT_PORTS[scheme] else str(number)
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def _unique(origins: list[str]) -> list[str]:
    return list(dict.fromkeys(origins))


Origin = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ORIGIN_MAX),
    AfterValidator(normalize_origin),
]
Origins = Annotated[
    list[Origin],
    Field(
        max_length=MAX_ORIGINS,
        description="Exact origins (`scheme://host[:port]`, http or https, no path) whose pages may post this "
        "campaign's conversions (`POST /e`, CORS). Stored lowercased without the default port, each once; "
        f"at most {MAX_ORIGINS}.",
        examples=[["https://shop.example.com", "http://localhost:8080"]],
    ),
    AfterValidator(_unique),
]
