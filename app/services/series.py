"""Campaign time series: opens, first opens, clicks and conversions per hour or day bucket.

Whole hours come from campaign_hours (one row per hour), the partial hours at the edges of
`from`/`to` from the openings/clicks themselves, the first opens per bucket from the index
(campaign_id, first_opened_at), and the conversions per bucket from the index (campaign_id,
occurred_at) of the conversions (one grouped query).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import ValidationFailed
from app.models import CampaignHour, Click, ContactStats, Conversion, Opening
from app.schemas.reports import BUCKET_SECONDS, Bucket, SeriesPoint
from app.services.sql import epoch_bucket, int_div

MAX_BUCKETS = 10_000
HOUR = 3600

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _epoch_seconds(moment: datetime) -> int:
    """Whole seconds since 1970-01-01 UTC, rounded down, in integers: `timestamp()` is a float,
    which rounds 9998-12-31T23:59:59.999999 up into year 9999."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _SECOND


def _floor(moment: datetime, step: int) -> datetime:
    seconds = _epoch_seconds(moment)
    return _EPOCH + timedelta(seconds=seconds - seconds % step)


def _ceil(moment: datetime, step: int) -> datetime:
    floor = _floor(moment, step)
    return floor if floor == moment else floor + timedelta(seconds=step)


def _invalid(loc: str, msg: str) -> ValidationFailed:
    return ValidationFailed([{"loc": ["query", loc], "msg": msg, "type": "value_error"}])


def _raw_counts(db: Session, campaign_id: int, step: int, start: datetime, end: datetime) -> dict[int, list[int]]:
    """Opens and clicks per bucket between two instants, counted on the openings/clicks (used
    for the partial hours at the edges of a range)."""
    counts: dict[int, list[int]] = {}
    if start >= end:
        return counts
    sources = ((Opening.campaign_id, Opening.opened_at), (Click.campaign_id, Click.clicked_at))
    for index, (campaign, column) in enumerate(sources):
        at = epoch_bucket(column, step)
        stmt = select(at, func.count()).where(campaign == campaign_id, column >= start, column < end).group_by(at)
        for b, n in db.execute(stmt).all():
            counts.setdefault(int(b), [0, 0])[index] += int(n)
    return counts


def campaign_series(
    db: Session, campaign_id: int, bucket: Bucket, start: datetime | None, end: datetime | None
) -> list[SeriesPoint]:
    """Opens, first opens (contacts opening for the first time), clicks and conversions per bucket,
    zero-filled.

    `from` is inclusive and `to` exclusive; buckets start at `from` rounded down to the hour/day
    (UTC). Defaults: the bucket of the campaign's first opening/click/conversion, and the end of
    the bucket of its last one.
    """
    step = BUCKET_SECONDS[bucket]
    if start is not None and end is not None and end <= start:
        raise _invalid("to", "to must be after from")
    if start is None or end is None:
        first_open, last_open = db.execute(
            select(func.min(Opening.opened_at), func.max(Opening.opened_at)).where(Opening.campaign_id == campaign_id)
        ).one()
        first_click, last_click = db.execute(
            select(func.min(Click.clicked_at), func.max(Click.clicked_at)).where(Click.campaign_id == campaign_id)
        ).one()
        c = Conversion
        first_conversion, last_conversion = db.execute(
            select(func.min(c.occurred_at), func.max(c.occurred_at)).where(c.campaign_id == campaign_id)
        ).one()
        firsts = [t for t in (first_open, first_click, first_conversion) if t is not None]
        lasts = [t for t in (last_open, last_click, last_conversion) if t is not None]
        if not firsts:
            return []  # nothing recorded: no default range
        start = start if start is not None else _floor(min(firsts), step)
        end = end if end is not None else _floor(max(lasts), step) + timedelta(seconds=step)
        if end <= start:
            return []  # the one bound given lies beyond every event
    first_bucket = _floor(start, step)
    buckets = math.ceil((end - first_bucket).total_seconds() / step)
    if buckets > MAX_BUCKETS:
        raise _invalid(
            "to",
            f"{buckets} buckets of one {bucket} requested; at most {MAX_BUCKETS}: narrow from/to or use bucket=day",
        )

    # Whole hours from the hourly counters, the partial hours at both ends from the rows.
    whole_from, whole_to = _ceil(start, HOUR), _floor(end, HOUR)
    if whole_from >= whole_to:
        counts = _raw_counts(db, campaign_id, step, start, end)
    else:
        counts = _raw_counts(db, campaign_id, step, start, whole_from)
        for b, (opens, clicks) in _raw_counts(db, campaign_id, step, whole_to, end).items():
            both = counts.setdefault(b, [0, 0])
            both[0] += opens
            both[1] += clicks
        h = CampaignHour
        at = int_div(h.hour, step // HOUR)
        hours = (
            select(at, func.sum(h.opens), func.sum(h.clicks))
            .where(
                h.campaign_id == campaign_id,
                h.hour >= _epoch_seconds(whole_from) // HOUR,
                h.hour < _epoch_seconds(whole_to) // HOUR,
            )
            .group_by(at)
        )
        for b, opens, clicks in db.execute(hours).all():
            both = counts.setdefault(int(b), [0, 0])
            both[0] += int(opens or 0)
            both[1] += int(clicks or 0)
    s = ContactStats
    first_at = epoch_bucket(s.first_opened_at, step)
    firsts_by_bucket = {
        int(b): int(n)
        for b, n in db.execute(
            select(first_at, func.count())
            .where(s.campaign_id == campaign_id, s.first_opened_at >= start, s.first_opened_at < end)
            .group_by(first_at)
        ).all()
    }
    converted_at = epoch_bucket(Conversion.occurred_at, step)
    conversions = {
        int(b): int(n)
        for b, n in db.execute(
            select(converted_at, func.count())
            .where(Conversion.campaign_id == campaign_id, Conversion.occurred_at >= start, Conversion.occurred_at < end)
            .group_by(converted_at)
        ).all()
    }
    first_index = _epoch_seconds(first_bucket) // step
    points = []
    for index in range(first_index, first_index + buckets):
        opens, clicks = counts.get(index, (0, 0))
        points.append(
            SeriesPoint(
                bucket_start=_EPOCH + timedelta(seconds=index * step),
                opens=opens,
                first_opens=firsts_by_bucket.get(index, 0),
                clicks=clicks,
                conversions=conversions.get(index, 0),
            )
        )
    return points
