"""A tracking event (one pixel load, one click or one conversion), its wire form and its Redis keys.

The one definition of the tracking-event format; later versions extend it here.

The request path records raw facts and a cheap first-pass split (`machine` for HEAD, a prefetch
header or a mail-proxy/scanner user agent, else `human`: app/tracking/classify.first_pass); the
ingest (worker or in-process flusher) classifies the events in batches into a client class and
a reason (app/tracking/classify.classify), off the hot path.

Wire format, version 4 (one string: a Redis stream entry's field `e`, or an entry of the
in-process queue), fields separated by the ASCII unit separator (\x1f), events of a batch
by the record separator (\x1e); both are removed from free text beforehand:

    open, click:  "3" | kind (o/c) | target id | contact id (0 for o) | epoch ms | client | event id
                      | split (m/h) | method | purpose | ip | user agent
    conversion:   "4" | "v" | campaign id | group id | contact id (0: anonymous) | link id
                      | click event id | epoch ms | event id | name | value | currency | order id | source

`client` is "" (the ingest classifies) unless the event was classified when it was made.
A conversion (POST /e, GET /e.gif: `ConversionEvent`) carries what its attribution token named and
what the page said, validated on the request path (app/schemas/conversions.py: no field can hold a
separator); `value` is the decimal as a string ("" with no value, as currency and order id). The
ingest stores it through app/tracking/conversions.store.
Opens and clicks keep version 3's marker and layout (a "4" with that layout also reads), so API
processes and workers of this release and the previous one read each other's opens and clicks
during a rolling upgrade, in either order; only conversions are version 4, which a previous
worker drops as malformed: upgrade the workers before the API processes (CHANGELOG). `decode`
still reads version 2 (`"2" | kind | target | contact | ms | client | event id | ip | ua`,
classified on the request path), with its class as it was decided then.

Event ids: 96 random bits from the OS CSPRNG as 24 hex digits (`new_event_id`; ~0.4 µs).
The id of one tenant's load tells nothing about the next one, so nobody can pre-record
(and so suppress, `INSERT IGNORE` on the unique `event_id`) another tenant's next load.
The id is assigned when the load is answered, so one load has one id whichever path stores
it: if Redis dies after running the enqueue script but before its reply arrives, the API
records the load through its fallback queue too, and the unique column keeps one row.
Manual openings (app/services/openings.py) live in their own namespace (`<pixel id>~<key>`:
`~` never occurs in a tracking id), so they cannot collide with these (`manual_event_id`).

Redis keys (computed here, passed to the enqueue script in KEYS, never built inside it), by a
`KeyScheme` (STREAM_PARTITIONS, REDIS_CLUSTER). An event goes to partition `id % N` (`partition_id`:
the pixel of a load, the link of a click, the campaign of a conversion, so one dedupe key always
lands in one partition). With one partition on one Redis (the default) the names are as below,
unchanged since version 2. Partitioned (N > 1, or any N on a Redis Cluster) each partition's stream
and dedupe keys share the hash tag `{p<i>}`, so one script call touches one cluster slot:
`pt:{p3}:events`, `pt:{p3}:d:o:<pixel id>:<split>`, ... (the names below with `pt:` → `pt:{p3}:`).
Changing N moves a target to another partition: its dedupe key starts afresh (at most one more
event per target and split within the first window) and the old streams are drained by the workers.
- `STREAM` (`pt:events`): the stream the worker's consumer group `GROUP` (`pt:ingest`) reads;
- `dedupe_key`: `pt:d:o:<pixel id>:<split>` for a load, `pt:d:c:<link id>:<contact id>:<split>`
  for a click, set with `NX EX <DEDUPE_WINDOW_SECONDS>`: within the window one machine and one
  human event of each are recorded, so a proxy's prefetch never swallows the person's own open.
  (Keys of version 2, without the split, expire within one window after an upgrade.)
  A conversion's is `pt:d:v:<its idempotency key>` (`conversion_key` of its campaign, contact and
  order id; without an order id a fresh one: each post counts once), so the same order posted twice
  within the window is enqueued once; the store's unique key keeps it once after the window too.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import NamedTuple

VERSION = "4"
# Opens and clicks are laid out as in version 3 and still written as "3": a worker of the previous
# release reads them during a rolling upgrade, whichever is upgraded first. Only conversions need 4.
OPEN_CLICK_VERSION = "3"
PREVIOUS = ("3", "2")  # still decoded: entries older releases left in the stream
_V4, _V3, _V2 = VERSION + "\x1f", "3\x1f", "2\x1f"
SEP = "\x1f"  # between the fields of one event
RECORD_SEP = "\x1e"  # between events of a batch (app/tracking/queue.py)
_SEPARATORS = str.maketrans({SEP: " ", RECORD_SEP: " "})
OPEN, CLICK, CONVERSION = "o", "c", "v"
MACHINE, HUMAN = "m", "h"  # the first-pass split
UA_MAX = 512
EVENT_ID_BYTES = 12  # 96 random bits

STREAM = "pt:events"
GROUP = "pt:ingest"


def new_event_id() -> str:
    """An unpredictable, unique event id: 96 bits from the OS CSPRNG (fork-safe, no state)."""
    return os.urandom(EVENT_ID_BYTES).hex()


def conversion_key(campaign_id: int, contact_id: int | None, order_id: str | None) -> str:
    """A conversion's idempotency key (its `event_id`): with an order id, one per (campaign, contact
    or the campaign's anonymous contacts, order id), whether the landing page or the backend posts
    it, however often; without one, a fresh random id (each post counts once). `v` + 43
    characters: never equal to a tracking event id (24 hex digits) nor a manual one (`~`)."""
    if order_id is None:
        return "v" + new_event_id()
    who = "a" if contact_id is None else str(contact_id)
    digest = hashlib.sha256(f"{campaign_id}:{who}:{order_id}".encode()).digest()
    return "v" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def dedupe_key(kind: str, target_id: int, contact_id: int, machine: bool) -> str:
    """The Redis key that marks a recorded load of a pixel / click of a link by a contact, one per
    first-pass split."""
    split = MACHINE if machine else HUMAN
    if kind == OPEN:
        return f"pt:d:o:{target_id}:{split}"
    return f"pt:d:c:{target_id}:{contact_id}:{split}"


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
    client: str  # ClientKind value, or "" until the ingest classifies the event
    ip: str
    user_agent: str
    event_id: str = ""  # "" (events written by hand): the stream entry id is used
    machine: bool = False  # the request path's first-pass split (the dedupe slot)
    method: str = "GET"
    purpose: str = ""  # the Purpose / Sec-Purpose / X-Purpose / X-Moz header
    reason: str = ""  # why `client` (set with it by the ingest; not on the wire)

    @property
    def dedupe_key(self) -> str:
        return dedupe_key(self.kind, self.target_id, self.contact_id, self.machine)

    def encode(self) -> str:
        split = MACHINE if self.machine else HUMAN
        fields = (str(self.target_id), str(self.contact_id), str(self.at_ms), self.client, self.event_id, split)
        free = (_clean(self.method), _clean(self.purpose), _clean(self.ip), _clean(self.user_agent))
        return SEP.join((OPEN_CLICK_VERSION, self.kind, *fields, *free))

    @classmethod
    def decode(cls, data: str | bytes) -> Event:
        """An open or a click of this version or an older one; raises ValueError on anything else."""
        event = decode(data)
        if not isinstance(event, Event):
            raise ValueError("not an open or a click")
        return event


class ConversionEvent(NamedTuple):
    """A conversion reported by a landing page (POST /e, GET /e.gif), as its attribution token named it."""

    campaign_id: int
    group_id: int
    contact_id: int  # 0: an anonymous contact's token
    link_id: int
    click_event_id: str
    at_ms: int
    event_id: str  # "v" + new_event_id(): the row's key when there is no order id
    name: str
    value: Decimal | None
    currency: str | None
    order_id: str | None
    source: str = "browser"

    @property
    def kind(self) -> str:
        return CONVERSION

    @property
    def dedupe_key(self) -> str:
        if self.order_id is None:
            return "pt:d:v:" + self.event_id  # each post counts once
        return "pt:d:v:" + conversion_key(self.campaign_id, self.contact_id or None, self.order_id)

    def encode(self) -> str:
        ids = (self.campaign_id, self.group_id, self.contact_id, self.link_id)
        value = "" if self.value is None else str(self.value)
        tail = (self.name, value, self.currency or "", self.order_id or "", self.source)
        return SEP.join(
            (VERSION, CONVERSION, *map(str, ids), self.click_event_id, str(self.at_ms), self.event_id, *tail)
        )


def _conversion(parts: list[str]) -> ConversionEvent:
    if len(parts) != 14 or not parts[8] or not parts[9]:
        raise ValueError("malformed conversion")
    _v, _kind, campaign, group, contact, link, click, at_ms, event_id, name, value, currency, order, source = parts
    try:
        amount = Decimal(value) if value else None
    except InvalidOperation as exc:
        raise ValueError("malformed conversion value") from exc
    ids = int(campaign), int(group), int(contact), int(link)
    return ConversionEvent(*ids, click, int(at_ms), event_id, name, amount, currency or None, order or None, source)


def decode(data: str | bytes) -> Event | ConversionEvent:
    """An event of this version or an older one; raises ValueError on anything malformed."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if text.startswith(_V4) or text.startswith(_V3):
        parts = text.split(SEP, 11)
        kind = parts[1] if len(parts) > 1 else ""
        if kind == CONVERSION and text.startswith(_V4):
            return _conversion(text.split(SEP))
        if len(parts) != 12 or kind not in (OPEN, CLICK) or parts[7] not in (MACHINE, HUMAN):
            raise ValueError("malformed event")
        _v, kind, target, contact, at_ms, client, event_id, split, method, purpose, ip, ua = parts
        machine = split == MACHINE
        return Event(kind, int(target), int(contact), int(at_ms), client, ip, ua, event_id, machine, method, purpose)
    if text.startswith(_V2):
        parts = text.split(SEP, 8)
        if len(parts) != 9 or parts[1] not in (OPEN, CLICK) or not parts[5]:
            raise ValueError("malformed event")
        _v, kind, target, contact, at_ms, client, event_id, ip, ua = parts
        return Event(kind, int(target), int(contact), int(at_ms), client, ip, ua, event_id, reason="event:v2")
    raise ValueError("malformed event")


Tracked = Event | ConversionEvent  # what the queue carries


def partition_id(event: Tracked) -> int:
    """The id an event is partitioned by: pixel (load), link (click), campaign (conversion)."""
    return event.target_id if isinstance(event, Event) else event.campaign_id


class KeyScheme(NamedTuple):
    """The Redis key names of the event streams and dedupe keys (module docstring)."""

    partitions: int = 1
    tagged: bool = False  # hash-tagged names: partitions > 1, or a Redis Cluster

    @classmethod
    def of(cls, partitions: int = 1, cluster: bool = False) -> KeyScheme:
        if partitions < 1:
            raise ValueError("STREAM_PARTITIONS must be at least 1")
        return cls(partitions, cluster or partitions > 1)

    def partition(self, event: Tracked) -> int:
        return partition_id(event) % self.partitions if self.partitions > 1 else 0

    def stream(self, partition: int) -> str:
        return f"pt:{{p{partition}}}:events" if self.tagged else STREAM

    def streams(self) -> list[str]:
        return [self.stream(p) for p in range(self.partitions)]

    def dedupe(self, event: Tracked, partition: int) -> str:
        """The event's dedupe key in its partition (`partition` = self.partition(event))."""
        key = event.dedupe_key
        return f"pt:{{p{partition}}}:{key[3:]}" if self.tagged else key


DEFAULT_KEYS = KeyScheme()


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
