"""The stream worker's gauges: the database up, and a stream's length, pending entries and lag."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.clients import SyncRedis
from app.db import connect_read_only
from app.tracking.queue import GROUP


def database_up(engine: Engine) -> None:
    """Set the database's up gauge from a trivial query."""
    try:
        with connect_read_only(engine) as conn:
            conn.execute(text("SELECT 1"))
        metrics.DEPENDENCY_UP.labels("database").set(1)
    except SQLAlchemyError:
        metrics.DEPENDENCY_UP.labels("database").set(0)


def backlog(redis: SyncRedis, stream: str, group: str = GROUP) -> tuple[int, int, int]:
    """A stream's (length, pending, lag: entries not yet delivered to the group), single-key calls
    only. A stream without our group (Redis lost its data) counts every entry as lag."""
    pipe = redis.pipeline(transaction=False)
    pipe.xlen(stream)
    pipe.exists(stream)
    length, exists = pipe.execute()
    groups: Any = redis.xinfo_groups(stream) if exists else []
    mine = next((g for g in groups if g.get("name") == group), None)
    if mine is None:
        return length, 0, length
    pending = mine.get("pending") or 0
    lag = mine.get("lag")
    # Redis reports no lag when it cannot compute it; acknowledged entries are deleted,
    # so what is left in the stream beyond the pending ones has not been delivered.
    return length, pending, lag if lag is not None else max(0, length - pending)
