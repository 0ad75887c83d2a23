"""A tracking event (one pixel load or one click) and its compact wire form.

Events travel through the Redis stream (field `e`) or the in-process queue as one
string: kind, target ids, time, client class, ip, user agent and event id, separated
by the ASCII unit separator; both separators are removed from free text beforehand.

The event id is assigned when the load is answered (`new_event_id`), so one load has
one id whichever path stores it: if Redis dies after running the enqueue script but
before its reply arrives, the API records the load through its fallback queue too,
and the unique `event_id` column keeps a single row.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import secrets
from functools import lru_cache
from typing import NamedTuple

SEP = "\x1f"  # between the fields of one event
RECORD_SEP = "\x1e"  # between events of a batch (app/tracking/queue.py)
_SEPARATORS = str.maketrans({SEP: " ", RECORD_SEP: " "})
OPEN, CLICK = "o", "c"
UA_MAX = 512

_prefix = ""
_counter = itertools.count()


def _reseed() -> None:
    """A random prefix per process (and again in a forked child): ids never collide across processes."""
    global _prefix, _counter
    _prefix = secrets.token_hex(8) + "."
    _counter = itertools.count()


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_event_id() -> str:
    """A unique event id (random per-process prefix + counter; cheaper than uuid4 on the hot path)."""
    return f"{_prefix}{next(_counter):x}"


class Event(NamedTuple):
    """Immutable; a NamedTuple because one is built per pixel load (cheaper than a frozen dataclass)."""

    kind: str  # OPEN or CLICK
    target_id: int  # pixel id (OPEN) or link id (CLICK)
    contact_id: int  # the contact (CLICK); 0 for OPEN (the pixel knows its contact)
    at_ms: int  # epoch milliseconds, UTC
    client: str  # ClientKind value
    ip: str
    user_agent: str
    event_id: str = ""  # "" (events written by older versions, or by hand): the stream entry id is used

    @property
    def dedupe_key(self) -> str:
        if self.kind == OPEN:
            return f"pt:d:o:{self.target_id}"
        return f"pt:d:c:{self.target_id}:{self.contact_id}"

    def encode(self) -> str:
        ua = _clean(self.user_agent)
        ip = _clean(self.ip)
        fields = (self.kind, str(self.target_id), str(self.contact_id), str(self.at_ms), self.client, ip, ua)
        return SEP.join((*fields, self.event_id) if self.event_id else fields)

    @classmethod
    def decode(cls, data: str | bytes) -> Event:
        """Raises ValueError on anything malformed."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        parts = text.split(SEP, 7)
        if len(parts) not in (7, 8) or parts[0] not in (OPEN, CLICK):
            raise ValueError("malformed event")
        kind, target, contact, at_ms, client, ip, ua = parts[:7]
        event_id = parts[7] if len(parts) == 8 else ""
        return cls(kind, int(target), int(contact), int(at_ms), client, ip, ua, event_id)


@lru_cache(maxsize=8192)
def _clean(text: str) -> str:
    """Free text without the separators (cached: the same user agents come back all the time)."""
    return text[:UA_MAX].translate(_SEPARATORS)


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
