"""Campaign reports: the stats of a campaign and its A/B groups, and the CSV exports.

The stats read the report counters (app/models/stats.py, kept current by
app/services/rollups.py), never the openings themselves, so their cost follows the number of
contacts, not of openings. For a campaign:

1. its groups (id, name);
2. group_counts, one row per group (the sums of its contacts' rows): contacts, sent, pixels,
   opens per client kind, openers, openers with a known delay, clicks, clickers;
3. the median delay to the first open, per group and overall: the middle entry (or the two middle
   ones) of the index (campaign_id[, group_id], first_open_delay_us), read at its position
   (`ORDER BY ... LIMIT 2 OFFSET n`), index-only;
4. with `bucket`: opens and clicks from campaign_hours (one row per hour), the partial hours at
   the edges of `from`/`to` from the openings/clicks themselves, and the first opens per bucket
   from the index (campaign_id, first_opened_at).

Campaign totals are the sums of the group rows (a contact belongs to exactly one group).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from app.db import read_only
from app.errors import ValidationFailed
from app.models import (
    MACHINE_CLIENTS,
    OPEN_COLUMNS,
    Campaign,
    CampaignHour,
    Click,
    ClientKind,
    Contact,
    ContactStats,
    Group,
    GroupCounts,
    Link,
    Opening,
)
from app.schemas.reports import BUCKET_SECONDS, Bucket, CampaignStats, GroupStats, SeriesPoint
from app.services.sql import epoch_bucket, int_div

MAX_BUCKETS = 10_000
CSV_CHUNK_ROWS = 5_000
RATE_DIGITS = 4
HOUR = 3600

AnySelect = Select[*tuple[Any, ...]]


# Stats.


@dataclass
class _Tally:
    """What is counted per group (and summed for the campaign)."""

    contacts: int = 0
    sent: int = 0
    pixels: int = 0
    unique_opens: int = 0
    timed_opens: int = 0  # openers with a reference time (the median's population)
    clicks: int = 0
    unique_clicks: int = 0
    by_client: dict[ClientKind, int] = field(default_factory=lambda: dict.fromkeys(ClientKind, 0))
    median_us: float | None = None

    def add(self, other: _Tally) -> None:
        self.contacts += other.contacts
        self.sent += other.sent
        self.pixels += other.pixels
        self.unique_opens += other.unique_opens
        self.timed_opens += other.timed_opens
        self.clicks += other.clicks
        self.unique_clicks += other.unique_clicks
        for kind, n in other.by_client.items():
            self.by_client[kind] += n


def _ratio(num: int, den: int) -> Fraction:
    return Fraction(num, den) if den else Fraction(0)


def _fields(tally: _Tally, basis: str) -> dict[str, Any]:
    den = tally.sent if basis == "sent" else tally.contacts
    total = sum(tally.by_client.values())
    machine = sum(n for kind, n in tally.by_client.items() if kind in MACHINE_CLIENTS)
    return {
        "contacts_scheduled": tally.contacts,
        "contacts_sent": tally.sent,
        "pixels": tally.pixels,
        "total_opens": total,
        "unique_opens": tally.unique_opens,
        "open_rate": round(float(_ratio(tally.unique_opens, den)), RATE_DIGITS),
        "open_rate_basis": basis,
        "clicks": tally.clicks,
        "unique_clicks": tally.unique_clicks,
        "click_through_rate": round(float(_ratio(tally.unique_clicks, den)), RATE_DIGITS),
        "click_to_open_rate": round(float(_ratio(tally.unique_clicks, tally.unique_opens)), RATE_DIGITS),
        "human_opens": total - machine,
        "machine_opens": machine,
        "opens_by_client": {kind.value: tally.by_client[kind] for kind in ClientKind},
        "median_seconds_to_first_open": None if tally.median_us is None else round(tally.median_us / 1e6, 3),
    }


def _group_counts(db: Session, campaign_id: int) -> dict[int, tuple[str, _Tally]]:
    groups = {
        gid: (name, _Tally())
        for gid, name in db.execute(
            select(Group.id, Group.name).where(Group.campaign_id == campaign_id).order_by(Group.id)
        ).all()
    }
    g = GroupCounts
    rows = db.execute(
        select(
            g.group_id,
            g.contacts,
            g.sent,
            g.pixels,
            g.openers,
            g.timed_openers,
            g.clicks,
            g.clickers,
            *(getattr(g, name) for name in OPEN_COLUMNS.values()),
        ).where(g.campaign_id == campaign_id)
    ).all()
    for gid, contacts, sent, pixels, openers, timed, clicks, clickers, *opens in rows:
        if gid not in groups:  # (a group created since the first query is simply not in this report)
            continue
        tally = groups[gid][1]
        tally.contacts, tally.sent, tally.pixels = contacts, sent, pixels
        tally.unique_opens, tally.timed_opens = openers, timed
        tally.clicks, tally.unique_clicks = clicks, clickers
        tally.by_client = dict(zip(OPEN_COLUMNS, opens, strict=True))
    return groups


def _median(db: Session, campaign_id: int, group_id: int | None, n: int) -> float | None:
    """The median of the first-open delays of a group (None: of the campaign), `n` of them:
    read at its position in the index, one or two entries."""
    if n == 0:
        return None
    s = ContactStats
    stmt = select(s.first_open_delay_us).where(s.campaign_id == campaign_id, s.first_open_delay_us.is_not(None))
    if group_id is not None:
        stmt = stmt.where(s.group_id == group_id)
    ordered = stmt.order_by(s.first_open_delay_us).offset((n - 1) // 2).limit(1 if n % 2 else 2)
    middle = [float(v) for v in db.scalars(ordered) if v is not None]
    return sum(middle) / len(middle) if middle else None


def campaign_stats(
    db: Session,
    campaign: Campaign,
    *,
    bucket: Bucket | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> CampaignStats:
    """The report of one campaign (the caller has checked ownership)."""
    # from/to only delimit the series: without a bucket there is no series and they are unused.
    series = _series(db, campaign.id, bucket, start, end) if bucket is not None else None

    groups = _group_counts(db, campaign.id)
    total = _Tally()
    for gid, (_name, tally) in groups.items():
        tally.median_us = _median(db, campaign.id, gid, tally.timed_opens)
        total.add(tally)
    total.median_us = _median(db, campaign.id, None, total.timed_opens)
    # One basis for the whole campaign, so that the groups' rates compare.
    basis = "sent" if total.sent else "scheduled"

    winner: int | None = None
    best = Fraction(-1)
    for gid, (_name, tally) in groups.items():  # ascending ids: a tie keeps the lowest id
        rate = _ratio(tally.unique_opens, tally.sent if basis == "sent" else tally.contacts)
        if tally.unique_opens and rate > best:
            winner, best = gid, rate

    data = _fields(total, basis)
    data["campaign_id"] = campaign.id
    data["groups"] = [
        GroupStats(group_id=gid, name=name, **_fields(tally, basis)) for gid, (name, tally) in groups.items()
    ]
    data["winner"] = winner
    if series is not None:
        data["series"] = series
    return CampaignStats(**data)


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


def _series(
    db: Session, campaign_id: int, bucket: Bucket, start: datetime | None, end: datetime | None
) -> list[SeriesPoint]:
    """Opens, first opens (contacts opening for the first time) and clicks per bucket, zero-filled.

    `from` is inclusive and `to` exclusive; buckets start at `from` rounded down to the hour/day
    (UTC). Defaults: the bucket of the campaign's first opening/click, and the end of the bucket
    of its last one.
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
        firsts = [t for t in (first_open, first_click) if t is not None]
        lasts = [t for t in (last_open, last_click) if t is not None]
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
            )
        )
    return points


# CSV exports.

OPENINGS_CSV_COLUMNS = (
    "opening_id",
    "opened_at",
    "campaign_id",
    "group_id",
    "group_name",
    "contact_id",
    "email",
    "pixel_id",
    "client",
    "ip",
    "user_agent",
    "event_id",
)
CLICKS_CSV_COLUMNS = (
    "click_id",
    "clicked_at",
    "campaign_id",
    "group_id",
    "group_name",
    "contact_id",
    "email",
    "link_id",
    "url",
    "client",
    "ip",
    "user_agent",
    "event_id",
)

# Cells a spreadsheet would run as a formula (OWASP "CSV injection"): =, +, -, @, and tab / CR.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as written to the CSV: ISO-8601 UTC timestamps, '' for NULL, and text that a
    spreadsheet would take for a formula prefixed with a single quote (shown, not evaluated)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_lines(rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: quotes fields with commas, quotes or newlines; CRLF
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return buffer.getvalue().encode("utf-8")


def _openings_chunk(campaign_id: int, after: tuple[datetime, int] | None) -> AnySelect:
    stmt = (
        select(
            Opening.id,
            Opening.opened_at,
            Opening.campaign_id,
            Contact.group_id,
            Group.name,
            Opening.contact_id,
            Contact.email,
            Opening.pixel_id,
            Opening.client,
            Opening.ip,
            Opening.user_agent,
            Opening.event_id,
        )
        .join(Contact, Contact.id == Opening.contact_id)
        .join(Group, Group.id == Contact.group_id)
        .where(Opening.campaign_id == campaign_id)
        .order_by(Opening.opened_at, Opening.id)  # index (campaign_id, opened_at) + the row id
    )
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(Opening.opened_at > at, and_(Opening.opened_at == at, Opening.id > last_id)))
    return stmt


def _clicks_chunk(campaign_id: int, after: tuple[datetime, int] | None) -> AnySelect:
    stmt = (
        select(
            Click.id,
            Click.clicked_at,
            Click.campaign_id,
            Contact.group_id,
            Group.name,
            Click.contact_id,
            Contact.email,
            Click.link_id,
            Link.url,
            Click.client,
            Click.ip,
            Click.user_agent,
            Click.event_id,
        )
        .join(Contact, Contact.id == Click.contact_id)
        .join(Group, Group.id == Contact.group_id)
        .join(Link, Link.id == Click.link_id)
        .where(Click.campaign_id == campaign_id)
        .order_by(Click.clicked_at, Click.id)  # index (campaign_id, clicked_at) + the row id
    )
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(Click.clicked_at > at, and_(Click.clicked_at == at, Click.id > last_id)))
    return stmt


def _export(
    session_factory: Callable[[], Session],
    header: Sequence[str],
    chunk_query: Callable[[tuple[datetime, int] | None], AnySelect],
    chunk_rows: int | None,
) -> Iterator[bytes]:
    chunk_rows = chunk_rows or CSV_CHUNK_ROWS
    yield _csv_lines([header])
    # Its own session: the request's is closed when the route returns, before the body streams.
    # One transaction for the whole export (a consistent snapshot on MariaDB), read in keyset
    # chunks in time order, so memory stays at one chunk whatever the campaign's size.
    with session_factory() as db:
        read_only(db)
        after: tuple[datetime, int] | None = None
        while True:
            rows = db.execute(chunk_query(after).limit(chunk_rows)).all()
            if rows:
                yield _csv_lines(rows)
            if len(rows) < chunk_rows:
                return
            after = (rows[-1][1], rows[-1][0])


def export_openings_csv(
    session_factory: Callable[[], Session], campaign_id: int, *, chunk_rows: int | None = None
) -> Iterator[bytes]:
    """The campaign's openings as CSV (header first), in opened_at order."""
    return _export(session_factory, OPENINGS_CSV_COLUMNS, lambda after: _openings_chunk(campaign_id, after), chunk_rows)


def export_clicks_csv(
    session_factory: Callable[[], Session], campaign_id: int, *, chunk_rows: int | None = None
) -> Iterator[bytes]:
    """The campaign's clicks as CSV (header first), in clicked_at order."""
    return _export(session_factory, CLICKS_CSV_COLUMNS, lambda after: _clicks_chunk(campaign_id, after), chunk_rows)
