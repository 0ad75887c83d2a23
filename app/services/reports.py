"""Campaign reports: the stats of a campaign and its A/B groups, and the CSV exports.

Everything is computed by SQL aggregates on the denormalised, indexed columns of
`openings`/`clicks` (campaign_id, contact_id, client, opened_at/clicked_at); Python only
combines a handful of result rows (one per group and client kind, a few median candidates,
one per time bucket). The queries for a campaign, each index-only on MariaDB:

1. groups ⟕ contacts, per group: contacts, contacts sent          (contacts (group_id, status))
2. contacts ⋈ pixels, per group: pixels                            (pixels (contact_id, number))
3. openings per (contact, client), then per (group, client): opens (openings (campaign_id, contact_id, client))
4. first opening per contact (a loose index scan: one index dive per opened contact), joined to
   its contact for the group and the reference time, then window functions (ROW_NUMBER/COUNT
   OVER) pick the median candidates per group and overall; also gives the unique opens per group
   (openings (campaign_id, contact_id, opened_at))
5. clicks per contact, then per group: clicks, unique clicks       (clicks (campaign_id, contact_id))
6. with `bucket`: openings/clicks per time bucket (COUNT, COUNT(DISTINCT contact_id)), the bucket
   computed in SQL as whole seconds since the Unix epoch divided by the bucket length — the same
   integers on SQLite (strftime('%s')) and MariaDB (TO_SECONDS, time-zone independent).

Campaign totals are the sums of the group rows (a contact belongs to exactly one group of its
campaign); the campaign median comes from the same window query.
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

from sqlalchemy import Float, Integer, Select, and_, case, func, literal_column, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.errors import ValidationFailed
from app.models import (
    MACHINE_CLIENTS,
    Campaign,
    Click,
    ClientKind,
    Contact,
    ContactStatus,
    Group,
    Link,
    Opening,
    Pixel,
)
from app.schemas.reports import BUCKET_SECONDS, Bucket, CampaignStats, GroupStats, SeriesPoint

MAX_BUCKETS = 10_000
CSV_CHUNK_ROWS = 5_000
RATE_DIGITS = 4

AnySelect = Select[*tuple[Any, ...]]

# SQL expressions that differ between SQLite and MariaDB, compiled per dialect.


class _MicrosecondsBetween(FunctionElement[float]):
    """`end - start` in microseconds (NULL if either is NULL)."""

    type = Float()
    inherit_cache = True
    name = "microseconds_between"


@compiles(_MicrosecondsBetween)
def _us_between_sqlite(element: _MicrosecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    # julianday() is a double: ~10 µs resolution today, far below the millisecond reported.
    return f"((julianday({end}) - julianday({start})) * 86400000000.0)"


@compiles(_MicrosecondsBetween, "mysql")
@compiles(_MicrosecondsBetween, "mariadb")
def _us_between_mysql(element: _MicrosecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"TIMESTAMPDIFF(MICROSECOND, {start}, {end})"


class _EpochBucket(FunctionElement[int]):
    """floor(seconds since 1970-01-01 00:00 UTC / step) of a stored (naive UTC) datetime."""

    type = Integer()
    inherit_cache = True
    name = "epoch_bucket"


@compiles(_EpochBucket)
def _bucket_sqlite(element: _EpochBucket, compiler: SQLCompiler, **kw: Any) -> str:
    column, step = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / {step})"


@compiles(_EpochBucket, "mysql")
@compiles(_EpochBucket, "mariadb")
def _bucket_mysql(element: _EpochBucket, compiler: SQLCompiler, **kw: Any) -> str:
    column, step = (compiler.process(clause, **kw) for clause in element.clauses)
    # TO_SECONDS counts from year 0 and ignores the session time zone (UNIX_TIMESTAMP would not).
    return f"((TO_SECONDS({column}) - 62167219200) DIV {step})"


def _epoch_bucket(column: Any, step: int) -> _EpochBucket:
    return _EpochBucket(column, literal_column(str(int(step)), Integer()))


# Stats.


@dataclass
class _Tally:
    """What is counted per group (and summed for the campaign)."""

    contacts: int = 0
    sent: int = 0
    pixels: int = 0
    unique_opens: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    by_client: dict[ClientKind, int] = field(default_factory=lambda: dict.fromkeys(ClientKind, 0))
    median_us: float | None = None

    def add(self, other: _Tally) -> None:
        self.contacts += other.contacts
        self.sent += other.sent
        self.pixels += other.pixels
        self.unique_opens += other.unique_opens
        self.clicks += other.clicks
        self.unique_clicks += other.unique_clicks
        for kind, n in other.by_client.items():
            self.by_client[kind] += n


def _client_kind(value: str) -> ClientKind:
    try:
        return ClientKind(value)
    except ValueError:
        return ClientKind.unknown  # a value written by something else than the classifier


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
    sent = func.coalesce(func.sum(case((Contact.status == ContactStatus.sent.value, 1), else_=0)), 0)
    rows = db.execute(
        select(Group.id, Group.name, func.count(Contact.id), sent)
        .select_from(Group)
        .outerjoin(Contact, Contact.group_id == Group.id)
        .where(Group.campaign_id == campaign_id)
        .group_by(Group.id, Group.name)
        .order_by(Group.id)
    ).all()
    groups = {gid: (name, _Tally(contacts=int(n), sent=int(s))) for gid, name, n, s in rows}

    pixels = db.execute(
        select(Contact.group_id, func.count())
        .select_from(Contact)
        .join(Pixel, Pixel.contact_id == Contact.id)
        .where(Contact.campaign_id == campaign_id)
        .group_by(Contact.group_id)
    ).all()
    for gid, n in pixels:
        if gid in groups:  # (a group created between two queries is simply not in this report)
            groups[gid][1].pixels = int(n)

    per_contact = (
        select(Opening.contact_id, Opening.client, func.count().label("n"))
        .where(Opening.campaign_id == campaign_id)
        .group_by(Opening.contact_id, Opening.client)
        .subquery()
    )
    opens = db.execute(
        select(Contact.group_id, per_contact.c.client, func.sum(per_contact.c.n))
        .select_from(per_contact)
        .join(Contact, Contact.id == per_contact.c.contact_id)
        .group_by(Contact.group_id, per_contact.c.client)
    ).all()
    for gid, client, n in opens:
        if gid in groups:
            groups[gid][1].by_client[_client_kind(client)] += int(n)

    clicks_per_contact = (
        select(Click.contact_id, func.count().label("n"))
        .where(Click.campaign_id == campaign_id)
        .group_by(Click.contact_id)
        .subquery()
    )
    clicks = db.execute(
        select(Contact.group_id, func.count(), func.sum(clicks_per_contact.c.n))
        .select_from(clicks_per_contact)
        .join(Contact, Contact.id == clicks_per_contact.c.contact_id)
        .group_by(Contact.group_id)
    ).all()
    for gid, unique, n in clicks:
        if gid in groups:
            groups[gid][1].unique_clicks = int(unique)
            groups[gid][1].clicks = int(n)
    return groups


def _first_opens(db: Session, campaign_id: int) -> tuple[dict[int, int], dict[int, float], float | None]:
    """Unique opens per group and the medians of the delay to the first opening (µs).

    One query: the first opening of each opened contact (MIN per contact: a loose index scan),
    minus the contact's sent_at (else scheduled_at; neither → no delay), negative clamped to 0.
    Window functions rank the delays per group and overall; the median is the middle one, or
    the mean of the two middle ones (the ranks with 2·rank in [n, n+2]). Only those candidates
    (and the first row of each group, which carries its count of openers) leave the database:
    at most 5 rows per group, whatever the campaign's size.
    """
    first = (
        select(Opening.contact_id, func.min(Opening.opened_at).label("first_at"))
        .where(Opening.campaign_id == campaign_id)
        .group_by(Opening.campaign_id, Opening.contact_id)  # campaign_id too: lets MariaDB skip-scan
        .subquery()
    )
    raw = _MicrosecondsBetween(func.coalesce(Contact.sent_at, Contact.scheduled_at), first.c.first_at)
    delays = (
        select(Contact.group_id.label("g"), case((raw < 0, 0), else_=raw).label("delay"))
        .select_from(first)
        .join(Contact, Contact.id == first.c.contact_id)
        .subquery()
    )
    # Two sorts only: the windows of one level share their partition and order (a group, or
    # all rows; each ordered by delay). NULL delays sort first on SQLite and MariaDB alike, so
    # the rank among the known delays is row_number - (rows - known delays). Every window is
    # ordered, counts over the whole frame: MariaDB 10.11 skips the sort of an ordered window
    # when an empty OVER () is in the same select, and ranks the rows wrongly.
    g, delay = delays.c.g, delays.c.delay
    whole = (None, None)  # ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
    ranked = select(
        g,
        delay,
        func.count().over(partition_by=g, order_by=delay, rows=whole).label("openers"),
        func.count(delay).over(partition_by=g, order_by=delay, rows=whole).label("ng"),
        func.row_number().over(partition_by=g, order_by=delay).label("rg"),
        func.count().over(order_by=delay, rows=whole).label("oa"),
        func.count(delay).over(order_by=delay, rows=whole).label("na"),
        func.row_number().over(order_by=delay).label("ra"),
    ).subquery()
    r = ranked.c
    group_mid = and_(r.delay.is_not(None), (2 * (r.rg - r.openers + r.ng)).between(r.ng, r.ng + 2))
    all_mid = and_(r.delay.is_not(None), (2 * (r.ra - r.oa + r.na)).between(r.na, r.na + 2))
    rows = db.execute(
        select(
            r.g,
            r.delay,
            r.openers,
            case((group_mid, 1), else_=0),
            case((all_mid, 1), else_=0),
        ).where(or_(r.rg == 1, group_mid, all_mid))
    ).all()
    openers: dict[int, int] = {}
    group_mids: dict[int, list[float]] = {}
    all_mids: list[float] = []
    for gid, value, n, is_group_mid, is_all_mid in rows:
        openers[gid] = int(n)
        if is_group_mid:
            group_mids.setdefault(gid, []).append(float(value))
        if is_all_mid:
            all_mids.append(float(value))
    medians = {gid: sum(values) / len(values) for gid, values in group_mids.items()}
    return openers, medians, (sum(all_mids) / len(all_mids) if all_mids else None)


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
    openers, medians, overall_median = _first_opens(db, campaign.id)
    total = _Tally(median_us=overall_median)
    for gid, (_name, tally) in groups.items():
        tally.unique_opens = openers.get(gid, 0)
        tally.median_us = medians.get(gid)
        total.add(tally)
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


def _floor(moment: datetime, step: int) -> datetime:
    epoch = math.floor(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step, UTC)


def _invalid(loc: str, msg: str) -> ValidationFailed:
    return ValidationFailed([{"loc": ["query", loc], "msg": msg, "type": "value_error"}])


def _series(
    db: Session, campaign_id: int, bucket: Bucket, start: datetime | None, end: datetime | None
) -> list[SeriesPoint]:
    """Opens, unique opens (distinct contacts) and clicks per bucket, zero-filled.

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

    opened = _epoch_bucket(Opening.opened_at, step)
    opens = {
        int(b): (int(n), int(u))
        for b, n, u in db.execute(
            select(opened, func.count(), func.count(func.distinct(Opening.contact_id)))
            .where(Opening.campaign_id == campaign_id, Opening.opened_at >= start, Opening.opened_at < end)
            .group_by(opened)
        ).all()
    }
    clicked = _epoch_bucket(Click.clicked_at, step)
    clicks = {
        int(b): int(n)
        for b, n in db.execute(
            select(clicked, func.count())
            .where(Click.campaign_id == campaign_id, Click.clicked_at >= start, Click.clicked_at < end)
            .group_by(clicked)
        ).all()
    }
    first_index = int(first_bucket.timestamp()) // step
    points = []
    for index in range(first_index, first_index + buckets):
        n, unique = opens.get(index, (0, 0))
        points.append(
            SeriesPoint(
                bucket_start=datetime.fromtimestamp(index * step, UTC),
                opens=n,
                unique_opens=unique,
                clicks=clicks.get(index, 0),
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
