"""The pixel and click hot path, read top to bottom.

`Tracker` turns a request into a `Reply` (status, headers, body): decode the Fernet token
in-process, note the raw facts and the first-pass machine/human split (the ingest classifies
the client later, in batches), submit the event to the queue (Redis: one
group-committed round trip for dedupe + enqueue; never the database), answer.
It backs both the ASGI wrapper (app/tracking/asgi.py) and the documented FastAPI routes
(app/routers/tracking.py). `LinkCache` holds the click targets; a link with `attribution`
gets `pt=<token>` on its redirect (app/tracking/redirect.py).
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any, NamedTuple

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.changefeed import ChangeFeed
from app.clients import AsyncRedis
from app.db import connect_read_only
from app.errors import DB_RETRY_AFTER
from app.models import Link
from app.tracking.classify import first_pass
from app.tracking.events import CLICK, OPEN, Event, anonymize_ip, new_event_id
from app.tracking.queue import EventQueue
from app.tracking.readcache import ReadCache
from app.tracking.redirect import Attributor
from app.tracking.tokens import TokenCodec

log = logging.getLogger("pixeltrack.tracking")

GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_CACHE = b"no-store, no-cache, must-revalidate, private"
GIF_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(GIF)).encode()),
    (b"cache-control", NO_CACHE),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
    (b"x-content-type-options", b"nosniff"),
]
NOT_FOUND = b'{"detail":"Not found.","code":"not_found"}'
NOT_FOUND_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(NOT_FOUND)).encode()),
    (b"cache-control", NO_CACHE),
]
UNAVAILABLE = b'{"detail":"The database is unavailable.","code":"service_unavailable"}'
UNAVAILABLE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(UNAVAILABLE)).encode()),
    (b"cache-control", NO_CACHE),
    (b"retry-after", DB_RETRY_AFTER.encode()),
]
Reply = tuple[int, list[tuple[bytes, bytes]], bytes]
_NOT_FOUND_REPLY: Reply = (404, NOT_FOUND_HEADERS, NOT_FOUND)
_UNAVAILABLE_REPLY: Reply = (503, UNAVAILABLE_HEADERS, UNAVAILABLE)


LINKS_CHANGED = "pt:links:changed"  # Redis pub/sub channel: ids of links edited or deleted


class LinkTarget(NamedTuple):
    url: str
    attribution: bool  # the redirect appends `pt=` (app/tracking/redirect.py)
    campaign_id: int


class LinkCache:
    """link id → stored URL (with its attribution flag and campaign), cached briefly in-process so clicks rarely wait on the database.

    An edit or delete drops the entry at once in the process that made it (`changed`); with Redis,
    it is also published on LINKS_CHANGED, and every other API process (`--workers N`, several
    hosts) drops it when the message arrives (`start` subscribes). Without Redis, or while Redis is
    unreachable, other processes see the edit when their entry expires (`ttl`, 10 s).
    """

    def __init__(
        self, engine: Engine, ttl: float = 10.0, max_size: int = 50_000, redis: AsyncRedis | None = None
    ) -> None:
        self._engine = engine
        self._rows: ReadCache[LinkTarget] = ReadCache(self._query, what="links", ttl=ttl, max_size=max_size)
        self._changes = ChangeFeed(
            redis, LINKS_CHANGED, on_message=self._apply, on_resubscribe=self._rows.clear, ttl=ttl
        )

    def _query(self, link_id: int) -> LinkTarget | None:
        with connect_read_only(self._engine) as conn:
            row = conn.execute(select(Link.url, Link.attribution, Link.campaign_id).where(Link.id == link_id)).first()
        return None if row is None else LinkTarget(row[0], bool(row[1]), row[2])

    async def target(self, link_id: int) -> LinkTarget | None:
        """The link's target (None: no such link); SQLAlchemyError on a miss while the database is down."""
        return await self._rows.get(link_id)

    def forget(self, link_id: int) -> None:
        self._rows.forget(link_id)

    async def changed(self, link_id: int) -> None:
        """A link was edited or deleted (committed): drop it here and tell the other processes."""
        self.forget(link_id)
        await self._changes.publish(str(link_id))

    def _apply(self, message: str) -> None:
        if message.isdigit():
            self.forget(int(message))

    async def start(self) -> None:
        """Subscribe to LINKS_CHANGED (before serving, so no edit made after start is missed)."""
        await self._changes.start()

    async def close(self) -> None:
        await self._changes.close()


class Tracker:
    def __init__(
        self,
        codec: TokenCodec,
        queue: EventQueue,
        links: LinkCache,
        *,
        attribution: Attributor | None = None,
        anonymize_ip: bool = False,
        disabled: bool = False,
        respect_dnt: bool = False,
    ) -> None:
        self.codec = codec
        self.queue = queue
        self.links = links
        self.attribution = attribution  # None: no `pt=` on any redirect
        self.anonymize_ip = anonymize_ip
        self.disabled = disabled  # TRACKING_DISABLED: answer, record nothing
        self.respect_dnt = respect_dnt  # RESPECT_DNT: honour DNT: 1 / Sec-GPC: 1

    def _event(self, kind: str, target: int, contact: int, headers: Any, ip: str, method: str) -> Event | None:
        """The event to record, or None when privacy settings say not to record this load."""
        if self.disabled:
            return None
        ua = purpose = ""
        for name, value in headers:
            if name == b"user-agent":
                ua = value.decode("latin-1")
            elif name in (b"purpose", b"sec-purpose", b"x-purpose", b"x-moz"):
                purpose = value.decode("latin-1")
            elif name in (b"dnt", b"sec-gpc") and value.strip() == b"1" and self.respect_dnt:
                return None
        machine = first_pass(ua, method=method, purpose=purpose)
        if self.anonymize_ip and ip:
            ip = anonymize_ip(ip)
        at_ms = time.time_ns() // 1_000_000
        return Event(kind, target, contact, at_ms, "", ip, ua, new_event_id(), machine, method, purpose)

    async def _record(self, event: Event | None) -> None:
        if event is None:
            return
        recorded = await self.queue.submit(event)
        metrics.tracking_request(event.kind, event.machine, recorded)

    async def pixel(self, token: str, headers: Any, ip: str, method: str = "GET") -> Reply:
        ref = self.codec.decode_pixel(token.removesuffix(".gif"))
        if ref is None:
            metrics.invalid_token(OPEN)
            return _NOT_FOUND_REPLY
        await self._record(self._event(OPEN, ref.pixel_id, 0, headers, ip, method))
        return 200, GIF_HEADERS, GIF

    async def click(self, token: str, headers: Any, ip: str, method: str = "GET") -> Reply:
        ref = self.codec.decode_click(token)
        try:
            target = await self.links.target(ref.link_id) if ref is not None else None
        except SQLAlchemyError:
            # An uncached link while the database is unreachable: the one error shape, retry later.
            return _UNAVAILABLE_REPLY
        if ref is None or target is None:
            metrics.invalid_token(CLICK)
            return _NOT_FOUND_REPLY
        event = self._event(CLICK, ref.link_id, ref.contact_id, headers, ip, method)
        location = target.url
        if target.attribution and event is not None and self.attribution is not None:
            # The token names this click's event id: the one the recorded click gets.
            location = await self.attribution.location(
                location,
                campaign_id=target.campaign_id,
                link_id=ref.link_id,
                contact_id=ref.contact_id,
                event_id=event.event_id,
            )
        await self._record(event)
        return 302, [(b"location", location.encode()), (b"cache-control", NO_CACHE), (b"content-length", b"0")], b""
