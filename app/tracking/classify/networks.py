"""Where a request came from: Apple's network (Mail Privacy Protection) or a published scanner range.

Addresses are parsed with the stdlib `ipaddress`: IPv4, IPv6 (a zone suffix `%eth0` is
ignored), IPv4-mapped IPv6 (`::ffff:a.b.c.d` is the IPv4 address). Private, loopback,
link-local and other non-global addresses belong to nobody here. Anything unparsable (garbage,
bytes, None) has no class: this module never raises on input.

The scanner ranges are a data file, app/tracking/data/scanner_ranges.txt (its sources are
cited in it); the lookup is a binary search over the sorted ranges (about 1 µs).
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Apple Inc. holds all of 17.0.0.0/8 (ARIN NET-17-0-0-0-1); Mail Privacy Protection's relays
# fetch from it (email_rules.APPLE_MPP_AGENT).
APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")
RANGES_FILE = "scanner_ranges.txt"

APPLE, SCANNER = "apple", "scanner"


@dataclass(frozen=True)
class Ranges:
    """Sorted, merged integer ranges of one IP version: starts[i] <= address <= ends[i]."""

    starts: list[int]
    ends: list[int]

    def __contains__(self, address: int) -> bool:
        i = bisect.bisect_right(self.starts, address) - 1
        return i >= 0 and address <= self.ends[i]


def parse_ranges(text: str) -> dict[int, Ranges]:
    """The networks of a ranges file, by IP version. A malformed line raises ValueError (the
    shipped file is checked by the tests; it is data we control, not request input)."""
    spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            network = ipaddress.ip_network(fields[0])
        except ValueError as error:
            raise ValueError(f"{RANGES_FILE}:{number}: {error}") from None
        spans[network.version].append((int(network.network_address), int(network.broadcast_address)))
    merged: dict[int, Ranges] = {}
    for version, items in spans.items():
        starts: list[int] = []
        ends: list[int] = []
        for start, end in sorted(items):
            if ends and start <= ends[-1] + 1:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(start)
                ends.append(end)
        merged[version] = Ranges(starts, ends)
    return merged


@cache
def scanner_ranges() -> dict[int, Ranges]:
    text = resources.files("app.tracking").joinpath("data", RANGES_FILE).read_text("utf-8")
    return parse_ranges(text)


def parse_ip(ip: object) -> IPAddress | None:
    """The address, unwrapped from IPv4-mapped IPv6; None for anything that is not one."""
    if isinstance(ip, bytes):
        ip = ip.decode("latin-1")
    if not isinstance(ip, str) or not ip or len(ip) > 64:
        return None
    try:
        address = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_APPLE_FIRST, _APPLE_LAST = int(APPLE_NETWORK.network_address), int(APPLE_NETWORK.broadcast_address)


def ip_class(ip: str | None) -> str:
    """The address's class, "apple", "scanner" or "" (none): all that classification reads from it.
    Callers that cache verdicts can key them on this instead of the address.

    Most addresses are dotted IPv4 in neither range: those are answered from the integer alone
    (`inet_pton`, two comparisons and a binary search: about 1 µs, where parsing with `ipaddress`
    and asking `is_global` costs ten times that). Everything else takes the full path."""
    if isinstance(ip, str):
        try:
            number = int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
        except (OSError, ValueError):  # ValueError: an embedded NUL
            pass  # not dotted IPv4: IPv6, a mapped address, a zone suffix, garbage
        else:
            if not _APPLE_FIRST <= number <= _APPLE_LAST and number not in scanner_ranges()[4]:
                return ""
    return _ip_class(ip)


@lru_cache(maxsize=65536)
def _ip_class(ip: str | None) -> str:
    address = parse_ip(ip)
    if address is None or not address.is_global:
        return ""
    if int(address) in scanner_ranges()[address.version]:
        return SCANNER
    if address in APPLE_NETWORK:
        return APPLE
    return ""
