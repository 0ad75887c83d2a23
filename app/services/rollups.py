"""Keep the report counters (`contact_stats`, `campaign_hours`: app/models/stats.py) in step
with openings, clicks, pixels and contacts.

Three ways in, all in the caller's transaction:
- `add_events`: the tracking ingest adds what a batch inserted (increments and "earlier first
  opening" updates: commutative, so concurrent workers need no coordination);
- `refresh_contacts`: any other change recomputes the touched contacts' rows from the source
  tables (an INSERT ... SELECT: on MariaDB it reads the latest committed rows under shared locks,
  so it cannot miss an opening a worker commits meanwhile);
- `forget_hours` before rows are deleted, `count_hours` after rows are added by hand: the hourly
  counters move by what those rows weigh (read with a locking read).
`rebuild` recomputes a campaign (or everything) from scratch: migrations, seeding, repairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, case, delete, func, select

from app.models import (
    OPEN_COLUMNS,
    CampaignHour,
    Click,
    ClientKind,
    Contact,
    ContactStats,
    ContactStatus,
    Opening,
    Pixel,
)
from app.services.sql import DB, delay_us, epoch_bucket, upsert

HOUR = 3600
CHUNK = 500
STATS: Table = ContactStats.__table__  # type: ignore[assignment]
HOURS: Table = CampaignHour.__table__  # type: ignore[assignment]
KEY = ("campaign_id", "contact_id")
COLUMNS = [column.name for column in STATS.columns]
_KNOWN = [kind.value for kind in ClientKind if kind is not ClientKind.unknown]


def open_column(client: str) -> str:
    """The contact_stats counter of a stored `client` value (anything unknown → opens_unknown)."""
    try:
        return OPEN_COLUMNS[ClientKind(client)]
    except ValueError:
        return OPEN_COLUMNS[ClientKind.unknown]


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


# Recompute contacts from the source tables.


def _contact_rows(
    contacts: ColumnElement[bool], openings: ColumnElement[bool], clicks: ColumnElement[bool], pixels: Any
) -> Select[Any]:
    sums = []
    for kind, name in OPEN_COLUMNS.items():
        hit = Opening.client.not_in(_KNOWN) if kind is ClientKind.unknown else Opening.client == kind.value
        sums.append(func.sum(case((hit, 1), else_=0)).label(name))
    o = (
        select(Opening.contact_id.label("cid"), *sums, func.min(Opening.opened_at).label("first"))
        .where(openings)
        .group_by(Opening.contact_id)
        .subquery("o")
    )
    k = (
        select(Click.contact_id.label("cid"), func.count().label("n"), func.min(Click.clicked_at).label("first"))
        .where(clicks)
        .group_by(Click.contact_id)
        .subquery("k")
    )
    p = select(Pixel.contact_id.label("cid"), func.count().label("n")).where(pixels).group_by(Pixel.contact_id)
    ps = p.subquery("p")
    ref = func.coalesce(Contact.sent_at, Contact.scheduled_at)
    return (
        select(
            Contact.campaign_id,
            Contact.id,
            Contact.group_id,
            case((Contact.status == ContactStatus.sent.value, 1), else_=0),
            ref,
            func.coalesce(ps.c.n, 0),
            *(func.coalesce(o.c[name], 0) for name in OPEN_COLUMNS.values()),
            o.c.first,
            case((o.c.first.is_(None), None), else_=delay_us(ref, o.c.first)),
            func.coalesce(k.c.n, 0),
            k.c.first,
        )
        .select_from(Contact)
        .outerjoin(ps, ps.c.cid == Contact.id)
        .outerjoin(o, o.c.cid == Contact.id)
        .outerjoin(k, k.c.cid == Contact.id)
        .where(contacts)
    )


# The order of _contact_rows' columns.
_SELECTED = [
    "campaign_id",
    "contact_id",
    "group_id",
    "sent",
    "ref_at",
    "pixels",
    *OPEN_COLUMNS.values(),
    "first_opened_at",
    "first_open_delay_us",
    "clicks",
    "first_clicked_at",
]
assert sorted(_SELECTED) == sorted(COLUMNS), "contact_stats columns and their recompute disagree"


def _replace_all(new: Any) -> list[tuple[str, Any]]:
    return [(name, new[name]) for name in _SELECTED if name not in KEY]


def refresh_contacts(db: DB, contact_ids: Iterable[int]) -> None:
    """Recompute the rows of these contacts (created, edited, or whose pixels/openings/clicks
    changed). Deleted contacts have no row left (ON DELETE CASCADE)."""
    for chunk in _chunks(contact_ids):
        rows = _contact_rows(
            Contact.id.in_(chunk),
            Opening.contact_id.in_(chunk),
            Click.contact_id.in_(chunk),
            Pixel.contact_id.in_(chunk),
        )
        upsert(db, STATS, KEY, _replace_all, columns=_SELECTED, select=rows)


# Hourly counters.


def _hour_rows(
    db: DB, openings: ColumnElement[bool] | None, clicks: ColumnElement[bool] | None
) -> dict[tuple[int, int], list[int]]:
    """(campaign, hour) → [opens, clicks] of the matching rows, read with a locking read."""
    weights: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    sources = ((Opening.campaign_id, Opening.opened_at, openings), (Click.campaign_id, Click.clicked_at, clicks))
    for index, (campaign, column, where) in enumerate(sources):
        if where is None:
            continue
        hour = epoch_bucket(column, HOUR)
        stmt = select(campaign, hour, func.count()).where(where).group_by(campaign, hour)
        for campaign_id, at, n in db.execute(stmt.with_for_update()):
            weights[(int(campaign_id), int(at))][index] += int(n)
    return weights


def _add_hours(db: DB, weights: dict[tuple[int, int], list[int]], sign: int) -> None:
    rows = [
        {"campaign_id": campaign_id, "hour": hour, "opens": sign * opens, "clicks": sign * clicks}
        for (campaign_id, hour), (opens, clicks) in sorted(weights.items())
        if opens or clicks
    ]
    upsert(
        db,
        HOURS,
        ("campaign_id", "hour"),
        lambda new: [("opens", HOURS.c.opens + new.opens), ("clicks", HOURS.c.clicks + new.clicks)],
        rows=rows,
    )


def forget_hours(
    db: DB, *, openings: ColumnElement[bool] | None = None, clicks: ColumnElement[bool] | None = None
) -> None:
    """Before deleting the openings/clicks matching these conditions: take them off the hours."""
    _add_hours(db, _hour_rows(db, openings, clicks), -1)


def count_hours(
    db: DB, *, openings: ColumnElement[bool] | None = None, clicks: ColumnElement[bool] | None = None
) -> None:
    """After adding openings/clicks (other than through the ingest): add them to the hours."""
    _add_hours(db, _hour_rows(db, openings, clicks), +1)


# The ingest path.


def _epoch_hour(at: datetime) -> int:
    return int(at.timestamp()) // HOUR


def add_events(
    db: DB, openings: Sequence[dict[str, Any]], clicks: Sequence[dict[str, Any]], groups: dict[int, int]
) -> None:
    """Add inserted openings/clicks (the rows as inserted; `groups`: contact → group) to the counters."""
    contacts: dict[tuple[int, int], dict[str, Any]] = {}

    def row(campaign_id: int, contact_id: int) -> dict[str, Any]:
        found = contacts.get((campaign_id, contact_id))
        if found is None:
            found = contacts[(campaign_id, contact_id)] = {
                "campaign_id": campaign_id,
                "contact_id": contact_id,
                "group_id": groups[contact_id],
                **dict.fromkeys(OPEN_COLUMNS.values(), 0),
                "first_opened_at": None,
                "clicks": 0,
                "first_clicked_at": None,
            }
        return found

    hours: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for opening in openings:
        r = row(opening["campaign_id"], opening["contact_id"])
        r[open_column(opening["client"])] += 1
        at = opening["opened_at"]
        if r["first_opened_at"] is None or at < r["first_opened_at"]:
            r["first_opened_at"] = at
        hours[(opening["campaign_id"], _epoch_hour(at))][0] += 1
    for click in clicks:
        r = row(click["campaign_id"], click["contact_id"])
        r["clicks"] += 1
        at = click["clicked_at"]
        if r["first_clicked_at"] is None or at < r["first_clicked_at"]:
            r["first_clicked_at"] = at
        hours[(click["campaign_id"], _epoch_hour(at))][1] += 1
    # Sorted keys: concurrent workers lock rows in the same order (no deadlock between them).
    upsert(db, STATS, KEY, _add_counts, rows=[contacts[key] for key in sorted(contacts)])
    _add_hours(db, hours, +1)


def _earlier(current: Any, new: Any) -> ColumnElement[bool]:
    earlier: ColumnElement[bool] = new.is_not(None) & (current.is_(None) | (new < current))
    return earlier


def _add_counts(new: Any) -> list[tuple[str, Any]]:
    c = STATS.c
    opened_earlier = _earlier(c.first_opened_at, new.first_opened_at)
    return [
        *((name, c[name] + new[name]) for name in OPEN_COLUMNS.values()),
        ("clicks", c.clicks + new.clicks),
        # Before first_opened_at: MySQL applies the assignments in order, on the updated row.
        (
            "first_open_delay_us",
            case((opened_earlier, delay_us(c.ref_at, new.first_opened_at)), else_=c.first_open_delay_us),
        ),
        ("first_opened_at", case((opened_earlier, new.first_opened_at), else_=c.first_opened_at)),
        (
            "first_clicked_at",
            case((_earlier(c.first_clicked_at, new.first_clicked_at), new.first_clicked_at), else_=c.first_clicked_at),
        ),
    ]


# From scratch.


def rebuild(db: DB, campaign_id: int | None = None) -> None:
    """Recompute the counters of one campaign (None: of every campaign) from the source tables.
    Run it while nothing records events for that campaign (migration, seeding, repair)."""
    campaigns = [campaign_id] if campaign_id is not None else None
    where_contacts = Contact.campaign_id.in_(campaigns) if campaigns else Contact.id.is_not(None)
    where_openings = Opening.campaign_id.in_(campaigns) if campaigns else Opening.id.is_not(None)
    where_clicks = Click.campaign_id.in_(campaigns) if campaigns else Click.id.is_not(None)
    pixels = Pixel.contact_id.in_(select(Contact.id).where(where_contacts)) if campaigns else Pixel.id.is_not(None)
    upsert(
        db,
        STATS,
        KEY,
        _replace_all,
        columns=_SELECTED,
        select=_contact_rows(where_contacts, where_openings, where_clicks, pixels),
    )
    db.execute(
        delete(CampaignHour).where(CampaignHour.campaign_id.in_(campaigns)) if campaigns else delete(CampaignHour)
    )
    _add_hours(db, _hour_rows(db, where_openings, where_clicks), +1)
