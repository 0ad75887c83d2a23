"""The campaigns' `conversion_origins`, held in process: the public intake (POST /e, its CORS
preflight, GET /e.gif) checks a page's `Origin` here, never in the database (docs/conversions.md).

`OriginsCache` loads every campaign's origins when the API process starts, and again:
- at once in the process that changed them: a service that creates, updates or deletes a
  campaign's origins calls `changed(session)`; once that session commits, the live caches of this
  process reload (in the committing thread, so the request's answer comes after the reload) and
  publish on ORIGINS_CHANGED (app/changefeed.py), on which every other API process reloads;
- when the pub/sub connection comes back (messages may have been lost meanwhile);
- every CONVERSION_ORIGINS_REFRESH_SECONDS, a safety net (Redis down, no Redis at all).
Origins are compared exactly (scheme://host[:port], as browsers send them), case-insensitively.
A reload that fails (database unavailable) keeps the origins known so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.changefeed import ChangeFeed
from app.clients import AsyncRedis
from app.db import connect_read_only
from app.errors import describe_db_error
from app.models import Campaign

log = logging.getLogger("pixeltrack.origins")

ORIGINS_CHANGED = "pt:origins:changed"  # Redis pub/sub channel: some campaign's origins changed
_PENDING = "pixeltrack.origins_changed"  # Session.info: reload once this session commits
_LIVE: weakref.WeakSet[OriginsCache] = weakref.WeakSet()  # the started caches of this process


class OriginsCache:
    def __init__(self, engine: Engine, *, redis: AsyncRedis | None = None, refresh_seconds: float = 60.0) -> None:
        self._engine = engine
        self._refresh = refresh_seconds
        # (campaign id → its origins, the union of all): replaced as a whole, never mutated.
        self._state: tuple[dict[int, frozenset[str]], frozenset[str]] = ({}, frozenset())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._reloads: set[asyncio.Task[None]] = set()  # background reloads (a reference each)
        self._changes = ChangeFeed(
            redis, ORIGINS_CHANGED, on_message=self._on_message, on_resubscribe=self._soon, ttl=refresh_seconds
        )
        self.loads = 0  # completed loads (tests, diagnostics)

    def allowed(self, campaign_id: int, origin: str) -> bool:
        """Whether a page of `origin` may post the conversions of this campaign."""
        found = self._state[0].get(campaign_id)
        return found is not None and origin.lower() in found

    def allowed_anywhere(self, origin: str) -> bool:
        """Whether some campaign lists `origin` (the CORS preflight carries no token)."""
        return origin.lower() in self._state[1]

    def load(self) -> None:
        """Read every campaign's origins (blocking: a worker thread, or the committing one)."""
        by_campaign: dict[int, frozenset[str]] = {}
        with connect_read_only(self._engine) as conn:
            rows = conn.execute(
                select(Campaign.id, Campaign.conversion_origins).where(func.length(Campaign.conversion_origins) > 2)
            )
            for campaign_id, origins in rows:
                found = _origins(origins)
                if found:
                    by_campaign[campaign_id] = found
        self._state = (by_campaign, frozenset().union(*by_campaign.values()))
        self.loads += 1

    def _load_logged(self) -> None:
        try:
            self.load()
        except SQLAlchemyError as exc:
            log.error("conversion origins not reloaded, database unavailable (%s)", describe_db_error(exc))

    async def reload(self) -> None:
        await asyncio.to_thread(self._load_logged)

    def _on_message(self, _message: str) -> None:
        self._soon()

    def _soon(self) -> None:
        """Reload in the background (from the event loop: a pub/sub message, a resubscription)."""
        if self._loop is not None:
            task = self._loop.create_task(self.reload())
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    def changed_here(self) -> None:
        """This process committed a change: reload now (any thread) and tell the other processes."""
        self._load_logged()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed (shutting down)
                loop.call_soon_threadsafe(lambda: loop.create_task(self._changes.publish("1")))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._changes.start()  # before the first load: no change made after it is missed
        await self.reload()
        self._task = asyncio.create_task(self._periodically(), name="pixeltrack-origins-refresh")
        _LIVE.add(self)

    async def _periodically(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            await self.reload()

    async def close(self) -> None:
        _LIVE.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._changes.close()
        self._loop = None


def _origins(value: Any) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(item.strip().rstrip("/").lower() for item in value if isinstance(item, str) and item.strip())


def changed(db: Session) -> None:
    """Some campaign's `conversion_origins` changed in this session (created, updated, deleted):
    once it commits, this process's caches reload and the other processes are told."""
    if db.info.get(_PENDING):
        return
    db.info[_PENDING] = True
    event.listen(db, "after_commit", _committed, once=True)


def _committed(session: Session) -> None:
    session.info.pop(_PENDING, None)
    for cache in list(_LIVE):
        cache.changed_here()
