"""Data retention: delete openings and clicks older than a cut-off, in small batches.

Batches keep each transaction (and its locks) short, so the API and the worker keep
running while a large purge proceeds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from app.models.tracking import EVENT_TABLES
from app.services import counters

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """'180d', '12h', '30m', '2w' → timedelta (ValueError otherwise)."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*([mhdw])\s*", text)
    if match is None:
        raise ValueError(f"not an age like 180d, 12h, 30m or 2w: {text!r}")
    age = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if age <= timedelta(0):
        raise ValueError("the age must be positive")
    return age


def purge(
    engine: Engine,
    cutoff: datetime,
    *,
    batch_size: int = 5000,
    dry_run: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Delete (or with dry_run, count) openings/clicks recorded before `cutoff`."""
    done: dict[str, int] = {}
    for events in EVENT_TABLES:
        model, column, table = events.model, events.time, events.model.__tablename__
        if dry_run:
            with engine.connect() as conn:
                done[table] = conn.scalar(select(func.count()).select_from(model).where(column < cutoff)) or 0
            continue
        done[table] = 0
        while True:
            with engine.begin() as conn:
                ids = list(conn.scalars(select(model.id).where(column < cutoff).order_by(model.id).limit(batch_size)))
                if not ids:
                    break
                counters.delete_rows(conn, model, model.id.in_(ids))  # the rows and their weight in the counters
            done[table] += len(ids)
            if progress is not None:
                progress(table, done[table])
    return done
