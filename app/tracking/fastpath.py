"""The pixel and click hot path, read top to bottom.

`Tracker` turns a request into (status, headers, body): decode the Fernet token
in-process, classify the client, submit the event to the queue (Redis: one
group-committed round trip for dedupe + enqueue; never the database), answer.
`TrackingFastPath` wraps the whole FastAPI app (see app.main.create_asgi) and serves
`/o/…` and `/c/…` straight from `Tracker`, before FastAPI's middleware, routing,
dependency injection and instrumentation;
the same `Tracker` also backs the documented FastAPI routes (app/routers/tracking.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from app import metrics
from app.db import connect_read_only
from app.errors import DB_RETRY_AFTER, describe_db_error
from app.models import Link
from app.tracking.classify import classify
from app.tracking.events import CLICK, OPEN, Event, anonymize_ip, new_event_id
from app.tracking.queue import EventQueue
from app.tracking.tokens import TokenCodec

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

log = logging.getLogger("pixeltrack.tracking")


class LinkCache:
    """link id → stored URL, cached briefly in-process so clicks rarely wait on the database."""

    def __init__(self, engine: Engine, ttl: float = 10.0, max_size: int = 50_000) -> None:
        self._engine = engine
        self._ttl = ttl
        self._max = max_size
        self._items: dict[int, tuple[str | None, float]] = {}
        self.down = False

    def _query(self, link_id: int) -> str | None:
        with connect_read_only(self._engine) as conn:
            url: str | None = conn.scalar(select(Link.url).where(Link.id == link_id))
        return url

    async def url(self, link_id: int) -> str | None:
        now = time.monotonic()
        hit = self._items.get(link_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            url = await asyncio.to_thread(self._query, link_id)
        except SQLAlchemyError as exc:
            metrics.DEPENDENCY_ERRORS.labels("database", "api").inc()
            if not self.down:  # one line per outage, not one per click
                log.error("links unreadable, database unavailable (%s)", describe_db_error(exc))
                self.down = True
            raise
        if self.down:
            log.warning("links readable again")
            self.down = False
        if len(self._items) >= self._max:
            self._items.clear()
        self._items[link_id] = (url, now + self._ttl)
        return url

    def forget(self, link_id: int) -> None:
        self._items.pop(link_id, None)


class Tracker:
    def __init__(
        self,
        codec: TokenCodec,
        queue: EventQueue,
        links: LinkCache,
        *,
        anonymize_ip: bool = False,
        disabled: bool = False,
        respect_dnt: bool = False,
    ) -> None:
        self.codec = codec
        self.queue = queue
        self.links = links
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
        client = classify(ua, ip, method=method, purpose=purpose).value
        if self.anonymize_ip and ip:
            ip = anonymize_ip(ip)
        return Event(kind, target, contact, time.time_ns() // 1_000_000, client, ip, ua, new_event_id())

    async def _record(self, event: Event | None) -> None:
        if event is None:
            return
        recorded = await self.queue.submit(event)
        metrics.tracking_request(event.kind, event.client, recorded)

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
            url = await self.links.url(ref.link_id) if ref is not None else None
        except SQLAlchemyError:
            # An uncached link while the database is unreachable: the one error shape, retry later.
            return _UNAVAILABLE_REPLY
        if ref is None or url is None:
            metrics.invalid_token(CLICK)
            return _NOT_FOUND_REPLY
        await self._record(self._event(CLICK, ref.link_id, ref.contact_id, headers, ip, method))
        return 302, [(b"location", url.encode()), (b"cache-control", NO_CACHE), (b"content-length", b"0")], b""


class TrackingFastPath:
    """Wraps the FastAPI app: `/o/{token}.gif` and `/c/{token}` never reach FastAPI at all.

    Everything else (including lifespan) goes to the wrapped app; `state` is its state.
    """

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            handler = None
            if path.startswith("/o/") and path.endswith(".gif"):
                handler = self.state.tracker.pixel
            elif path.startswith("/c/"):
                handler = self.state.tracker.click
            if handler is not None:
                client = scope.get("client")
                status, headers, body = await handler(
                    path[3:], scope["headers"], client[0] if client else "", scope["method"]
                )
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
                return
        await self.app(scope, receive, send)
