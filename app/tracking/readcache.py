"""A read-through cache of database rows for the click path (links, and the contacts of
attribution links): what a click needs, read in a worker thread on a miss (the event loop never
waits on the database), each entry trusted for `ttl` seconds, the least recently used dropped
beyond `max_size`. A missing row is cached too (as None). While the database cannot be read a
miss raises SQLAlchemyError, counted, and logged once per outage (not once per click).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.errors import describe_db_error

log = logging.getLogger("pixeltrack.tracking")

V = TypeVar("V")


class ReadCache(Generic[V]):
    """id → `query(id)` (None: no such row)."""

    def __init__(self, query: Callable[[int], V | None], *, what: str, ttl: float, max_size: int) -> None:
        self._query = query
        self._what = what  # "links": the log lines' subject
        self.ttl = ttl
        self._max = max_size
        self._items: OrderedDict[int, tuple[V | None, float]] = OrderedDict()
        self.down = False

    async def get(self, key: int) -> V | None:
        now = time.monotonic()
        hit = self._items.get(key)
        if hit is not None and hit[1] > now:
            self._items.move_to_end(key)
            return hit[0]
        try:
            value = await asyncio.to_thread(self._query, key)
        except SQLAlchemyError as exc:
            metrics.DEPENDENCY_ERRORS.labels("database", "api").inc()
            if not self.down:
                log.error("%s unreadable, database unavailable (%s)", self._what, describe_db_error(exc))
                self.down = True
            raise
        if self.down:
            log.warning("%s readable again", self._what)
            self.down = False
        self._items[key] = (value, now + self.ttl)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)
        return value

    def forget(self, key: int) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()
