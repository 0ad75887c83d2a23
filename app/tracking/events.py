"""A tracking event (one pixel load or one click) and its compact wire form.

Events travel through the Redis stream (field `e`) or the in-process queue as one
string: kind, target ids, time, client class, ip and user agent, separated by
the ASCII unit separator; both separators are removed from free text beforehand.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

SEP = "\x1f"  # between the fields of one event
RECORD_SEP = "\x1e"  # between events of a batch (app/tracking/queue.py)
_SEPARATORS = str.maketrans({SEP: " ", RECORD_SEP: " "})
OPEN, CLICK = "o", "c"
UA_MAX = 512


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # OPEN or CLICK
    target_id: int  # pixel id (OPEN) or link id (CLICK)
    contact_id: int  # the contact (CLICK); 0 for OPEN (the pixel knows its contact)
    at_ms: int  # epoch milliseconds, UTC
    client: str  # ClientKind value
    ip: str
    user_agent: str

    @property
    def dedupe_key(self) -> str:
        if self.kind == OPEN:
            return f"pt:d:o:{self.target_id}"
        return f"pt:d:c:{self.target_id}:{self.contact_id}"

    def encode(self) -> str:
        ua = self.user_agent[:UA_MAX].translate(_SEPARATORS)
        ip = self.ip.translate(_SEPARATORS)
        return SEP.join((self.kind, str(self.target_id), str(self.contact_id), str(self.at_ms), self.client, ip, ua))

    @classmethod
    def decode(cls, data: str | bytes) -> Event:
        """Raises ValueError on anything malformed."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        parts = text.split(SEP, 6)
        if len(parts) != 7 or parts[0] not in (OPEN, CLICK):
            raise ValueError("malformed event")
        kind, target, contact, at_ms, client, ip, ua = parts
        return cls(kind, int(target), int(contact), int(at_ms), client, ip, ua)


def anonymize_ip(ip: str) -> str:
    """IPv4 truncated to its /24, IPv6 to its /48 (ANONYMIZE_IP=true)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
