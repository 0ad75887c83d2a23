"""A tracking event (one pixel load or one click), its wire form and its Redis keys.

The one definition of the tracking-event format; later versions extend it here.

Wire format, version 2 (one string: a Redis stream entry's field `e`, or an entry of the
in-process queue), fields separated by the ASCII unit separator (\x1f), events of a batch
by the record separator (\x1e); both are removed from free text beforehand:

    "2" | kind (o/c) | target id | contact id (0 for o) | epoch ms | client | event id | ip | user agent

The leading version marker says how to read the rest. `decode` still reads version 1
(no marker: `kind|target|contact|ms|client|ip|ua[|event id]`, 7 or 8 fields), so entries
left in the stream by an older release are ingested after an upgrade.

Event ids: 96 random bits from the OS CSPRNG as 24 hex digits (`new_event_id`; ~0.4 µs).
The id of one tenant's load tells nothing about the next one, so nobody can pre-record
(and so suppress, `INSERT IGNORE` on the unique `event_id`) another tenant's next load.
The id is assigned when the load is answered, so one load has one id whichever path stores
it: if Redis dies after running the enqueue script but before its reply arrives, the API
records the load through its fallback queue too, and the unique column keeps one row.
Manual openings (app/services/openings.py) live in their own namespace (`<pixel id>~<key>`:
`~` never occurs in a tracking id), so they cannot collide with these (`manual_event_id`).

Redis keys (computed here, passed to the enqueue script in KEYS, never built inside it):
- `STREAM` (`pt:events`): the stream the worker's consumer group `GROUP` (`pt:ingest`) reads;
- `dedupe_key`: `pt:d:o:<pixel id>` for a load, `pt:d:c:<link id>:<contact id>` for a click,
  set with `NX EX <DEDUPE_WINDOW_SECONDS>`.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
from functools import lru_cache
from typing import NamedTuple

VERSION = "2"
SEP = "\x1f"  # between the fields of one event
RECORD_SEP = "\x1e"  # between events of a batch (app/tracking/queue.py)
_SEPARATORS = str.maketrans({SEP: " ", RECORD_SEP: " "})
OPEN, CLICK = "o", "c"
UA_MAX = 512
EVENT_ID_BYTES = 12  # 96 random bits

STREAM = "pt:events"
GROUP = "pt:ingest"


def new_event_id() -> str:
    """An unpredictable, unique event id: 96 bits from the OS CSPRNG (fork-safe, no state)."""
    return os.urandom(EVENT_ID_BYTES).hex()


def dedupe_key(kind: str, target_id: int, contact_id: int) -> str:
    """The Redis key that marks a recorded load of a pixel / click of a link by a contact."""
    if kind == OPEN:
        return f"pt:d:o:{target_id}"
    return f"pt:d:c:{target_id}:{contact_id}"


# Manual openings (POST /api/v1/pixels/{id}/openings): the client's idempotency key is stored as
# `<pixel id>~<key>`, so it is unique per pixel only, never meets a tracking id (no `~` in those)
# nor another tenant's key, and the API shows the key part (`public_event_id`). A key too long
# to fit the column with its scope is stored (and shown) as `#` + a digest of it (`#` is not
# allowed in keys): still one opening per key and pixel.
MANUAL_SEP = "~"
EVENT_ID_MAX = 64  # the `event_id` column
_DIGEST_CHARS = 32  # base64url of SHA-256, truncated: 192 bits


def manual_event_id(pixel_id: int, key: str) -> str:
    scope = f"{pixel_id}{MANUAL_SEP}"
    if len(scope) + len(key) > EVENT_ID_MAX:
        key = "#" + base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()).decode()[:_DIGEST_CHARS]
    return scope + key


def public_event_id(stored: str) -> str:
    """The event id as the API shows it: a manual opening's own key, any other id as stored."""
    _scope, sep, key = stored.partition(MANUAL_SEP)
    return key if sep else stored


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
        return dedupe_key(self.kind, self.target_id, self.contact_id)

    def encode(self) -> str:
        fields = (str(self.target_id), str(self.contact_id), str(self.at_ms), self.client, self.event_id)
        return SEP.join((VERSION, self.kind, *fields, _clean(self.ip), _clean(self.user_agent)))

    @classmethod
    def decode(cls, data: str | bytes) -> Event:
        """Either version; raises ValueError on anything malformed."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if text.startswith(VERSION + SEP):
            parts = text.split(SEP, 8)
            if len(parts) != 9 or parts[1] not in (OPEN, CLICK):
                raise ValueError("malformed event")
            _version, kind, target, contact, at_ms, client, event_id, ip, ua = parts
            return cls(kind, int(target), int(contact), int(at_ms), client, ip, ua, event_id)
        parts = text.split(SEP, 7)  # version 1
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
