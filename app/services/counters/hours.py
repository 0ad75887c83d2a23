"""Hourly counters (`campaign_hours`): opens and clicks per campaign and hour.

`forget_hours` before rows are deleted or changed, `count_hours` after rows are added or changed
(other than by the ingest, which adds its batches'): the owner (session.py) calls them, and the
hourly counters move by what those rows weigh (read with a locking read).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, func, select

from app.models import CampaignHour, Click, Opening
from app.services.sql import DB, epoch_bucket, upsert

HOUR = 3600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOURS: Table = CampaignHour.__table__  # type: ignore[assignment]


def hour_rows(
    db: DB, openings: ColumnElement[bool] | None, clicks: ColumnElement[bool] | None
) -> dict[tuple[int, int], list[int]]:
    """(campaign, hour) → [opens, clicks] of the matching rows, read with a locking read."""
    return read_hours(db, hour_queries(openings, clicks))


def hour_queries(
    openings: ColumnElement[bool] | None, clicks: ColumnElement[bool] | None
) -> list[tuple[int, Select[*tuple[Any, ...]]]]:
    """The locking reads of `hour_rows`: (0 for openings, 1 for clicks; its query)."""
    queries: list[tuple[int, Select[*tuple[Any, ...]]]] = []
    sources = ((Opening.campaign_id, Opening.opened_at, openings), (Click.campaign_id, Click.clicked_at, clicks))
    for index, (campaign, column, where) in enumerate(sources):
        if where is None:
            continue
        hour = epoch_bucket(column, HOUR)
        queries.append(
            (index, select(campaign, hour, func.count()).where(where).group_by(campaign, hour).with_for_update())
        )
    return queries


def read_hours(
    db: DB, queries: list[tuple[int, Select[*tuple[Any, ...]]]], params: Mapping[str, Any] | None = None
) -> dict[tuple[int, int], list[int]]:
    """`hour_rows` of queries built beforehand (`hour_queries`), run with `params`."""
    weights: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for index, query in queries:
        for campaign_id, at, n in db.execute(query, params):
            weights[(int(campaign_id), int(at))][index] += int(n)
    return weights


def add_hours(db: DB, weights: dict[tuple[int, int], list[int]], sign: int) -> None:
    rows = [
        {"campaign_id": campaign_id, "hour": hour, "opens": sign * opens, "clicks": sign * clicks}
        for (campaign_id, hour), (opens, clicks) in sorted(weights.items())
        if opens or clicks
    ]
    upsert(
        db,
        HOURS,
        ("campaign_id", "hour"),
        _add_hour_counts,
        rows=rows,
    )


def _add_hour_counts(new: Any) -> list[tuple[str, Any]]:
    return [("opens", HOURS.c.opens + new.opens), ("clicks", HOURS.c.clicks + new.clicks)]


def forget_hours(
    db: DB, *, openings: ColumnElement[bool] | None = None, clicks: ColumnElement[bool] | None = None
) -> None:
    """Before deleting the openings/clicks matching these conditions: take them off the hours."""
    add_hours(db, hour_rows(db, openings, clicks), -1)


def count_hours(
    db: DB, *, openings: ColumnElement[bool] | None = None, clicks: ColumnElement[bool] | None = None
) -> None:
    """After adding openings/clicks (other than through the ingest): add them to the hours."""
    add_hours(db, hour_rows(db, openings, clicks), +1)


def epoch_hour(at: datetime) -> int:
    # Integers: timestamp() is a float, which rounds 23:59:59.999999 up into the next hour.
    return ((at if at.tzinfo else at.replace(tzinfo=UTC)) - _EPOCH) // timedelta(seconds=HOUR)
