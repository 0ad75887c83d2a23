"""Keep the report counters (`contact_stats`, `group_counts`, `campaign_hours`:
app/models/stats.py) in step with openings, clicks, pixels and contacts.

Three ways in, all in the caller's transaction:
- `add_events`: the tracking ingest adds what a batch inserted (increments and "earlier first
  opening" updates, computed by the database from the rows just inserted; commutative, so
  concurrent workers need no coordination beyond the row locks, always taken in the same
  order: contacts, groups, hours);
- `refresh_contacts`: any other change recomputes the touched contacts' rows from the source
  tables (an INSERT ... SELECT: on MariaDB it reads the latest committed rows under shared locks,
  so it cannot miss an opening a worker commits meanwhile); `forget_contacts` before contacts
  are deleted;
- `forget_hours` before rows are deleted, `count_hours` after rows are added by hand: the hourly
  counters move by what those rows weigh (read with a locking read).
A group's row moves by the difference between its contacts' rows after and before (read with
locking reads, so a worker committing meanwhile is either wholly before or wholly after).
`rebuild` recomputes a campaign (or everything) from scratch: migrations, seeding, repairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, Table, and_, case, delete, func, insert, or_, select

from app.models import (
    OPEN_COLUMNS,
    CampaignHour,
    Click,
    ClientKind,
    Contact,
    ContactStats,
    ContactStatus,
    GroupCounts,
    Opening,
    Pixel,
)
from app.services.sql import DB, delay_us, earlier_of, epoch_bucket, upsert

HOUR = 3600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CHUNK = 500
STATS: Table = ContactStats.__table__  # type: ignore[assignment]
HOURS: Table = CampaignHour.__table__  # type: ignore[assignment]
GROUPS: Table = GroupCounts.__table__  # type: ignore[assignment]
KEY = ("campaign_id", "contact_id")
GROUP_KEY = ("campaign_id", "group_id")
COLUMNS = [column.name for column in STATS.columns]
GROUP_COUNTERS = [column.name for column in GROUPS.columns if column.name not in GROUP_KEY]
GroupKey = tuple[int, int]
Sums = dict[str, int]  # GROUP_COUNTERS → value (a missing name: 0)
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


def _open_sums() -> list[Any]:
    """Per client kind (OPEN_COLUMNS), the number of openings of that kind (an aggregate)."""
    sums = []
    for kind, name in OPEN_COLUMNS.items():
        hit = Opening.client.not_in(_KNOWN) if kind is ClientKind.unknown else Opening.client == kind.value
        sums.append(func.sum(case((hit, 1), else_=0)).label(name))
    return sums


def _contact_rows(
    contacts: ColumnElement[bool], openings: ColumnElement[bool], clicks: ColumnElement[bool], pixels: Any
) -> Select[Any]:
    o = (
        select(Opening.contact_id.label("cid"), *_open_sums(), func.min(Opening.opened_at).label("first"))
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
    changed), and their groups'. Deleted contacts have no row left (ON DELETE CASCADE): see
    `forget_contacts`."""
    for chunk in _chunks(contact_ids):
        rows = _contact_rows(
            Contact.id.in_(chunk),
            Opening.contact_id.in_(chunk),
            Click.contact_id.in_(chunk),
            Pixel.contact_id.in_(chunk),
        )
        before = _group_sums(db, STATS.c.contact_id.in_(chunk))
        upsert(db, STATS, KEY, _replace_all, columns=_SELECTED, select=rows)
        after = _group_sums(db, STATS.c.contact_id.in_(chunk))
        _add_groups(db, {key: _minus(after.get(key, {}), before.get(key, {})) for key in before | after})


def forget_contacts(db: DB, contact_ids: Iterable[int]) -> None:
    """Before deleting these contacts: take their rows off their groups' (the contacts' own rows
    go with them, ON DELETE CASCADE). Not needed when their whole group goes."""
    for chunk in _chunks(contact_ids):
        gone = _group_sums(db, STATS.c.contact_id.in_(chunk))
        _add_groups(db, {key: _minus({}, sums) for key, sums in gone.items()})


# Group counters: the sums of their contacts' rows.


def _group_sums_query(where: ColumnElement[bool]) -> Select[Any]:
    """Per (campaign, group): the GROUP_COUNTERS of the contact_stats rows matching `where`."""
    c = STATS.c
    sums = {
        "contacts": func.count(),
        "sent": func.sum(c.sent, type_=Integer()),  # (a sum of booleans, counted as integers)
        "pixels": func.sum(c.pixels),
        **{name: func.sum(c[name]) for name in OPEN_COLUMNS.values()},
        "openers": func.count(c.first_opened_at),
        "timed_openers": func.count(c.first_open_delay_us),
        "clicks": func.sum(c.clicks),
        "clickers": func.count(c.first_clicked_at),
    }
    assert list(sums) == GROUP_COUNTERS, "group_counts columns and their sums disagree"
    return (
        select(c.campaign_id, c.group_id, *(sums[name].label(name) for name in GROUP_COUNTERS))
        .where(where)
        .group_by(c.campaign_id, c.group_id)
    )


def _minus(a: Sums, b: Sums) -> Sums:
    return {name: a.get(name, 0) - b.get(name, 0) for name in GROUP_COUNTERS}


def _group_sums(db: DB, where: ColumnElement[bool]) -> dict[GroupKey, Sums]:
    """The sums, read with a locking read: the latest committed rows and our own (a plain read
    on MariaDB would see the transaction's snapshot), and no one else's change until we commit."""
    found: dict[GroupKey, Sums] = {}
    for campaign_id, group_id, *values in db.execute(_group_sums_query(where).with_for_update()):
        found[(int(campaign_id), int(group_id))] = {
            name: int(v or 0) for name, v in zip(GROUP_COUNTERS, values, strict=True)
        }
    return found


def _add_groups(db: DB, deltas: dict[GroupKey, Sums]) -> None:
    """Move group rows by `deltas` (in key order: the same lock order in every transaction)."""
    rows = [
        {"campaign_id": campaign_id, "group_id": group_id, **{name: delta.get(name, 0) for name in GROUP_COUNTERS}}
        for (campaign_id, group_id), delta in sorted(deltas.items())
        if any(delta.values())
    ]
    upsert(db, GROUPS, GROUP_KEY, _add_group_counts, rows=rows)


def _add_group_counts(new: Any) -> list[tuple[str, Any]]:
    return [(name, GROUPS.c[name] + new[name]) for name in GROUP_COUNTERS]


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
        _add_hour_counts,
        rows=rows,
    )


def _add_hour_counts(new: Any) -> list[tuple[str, Any]]:
    return [("opens", HOURS.c.opens + new.opens), ("clicks", HOURS.c.clicks + new.clicks)]


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
    # Integers: timestamp() is a float, which rounds 23:59:59.999999 up into the next hour.
    return ((at if at.tzinfo else at.replace(tzinfo=UTC)) - _EPOCH) // timedelta(seconds=HOUR)


def add_events(db: DB, openings: Sequence[dict[str, Any]], clicks: Sequence[dict[str, Any]]) -> None:
    """Add the openings/clicks a batch inserted (the rows as inserted) to the counters.

    The database moves the contacts' rows itself, from the rows just inserted (found by their
    unique event_id): only event ids and contact ids travel, not a row of counters per contact.
    Their groups' rows move by the difference of the contacts' sums after and before; the
    hours by the rows' times."""
    by_campaign: dict[int, set[int]] = defaultdict(set)
    for row in (*openings, *clicks):
        by_campaign[row["campaign_id"]].add(row["contact_id"])
    # The contacts' rows by primary key, locked in key order (concurrent workers lock in the
    # same order: contacts, then groups, then hours). Locking reads: see _group_sums.
    keys = or_(
        *(
            and_(STATS.c.campaign_id == campaign_id, STATS.c.contact_id.in_(sorted(ids)))
            for campaign_id, ids in sorted(by_campaign.items())
        )
    )
    before = _group_sums(db, keys)
    missing: list[int] = []
    if sum(sums["contacts"] for sums in before.values()) < sum(len(ids) for ids in by_campaign.values()):
        # Contacts without a row (written to the database by hand): theirs from the source rows,
        # which already hold this batch's events, and the batch moves them no further.
        with_rows = set(db.scalars(select(STATS.c.contact_id).where(keys)))
        missing = sorted(set().union(*by_campaign.values()) - with_rows)
        refresh_contacts(db, missing)
        before = _group_sums(db, keys)
    if openings:
        where = Opening.event_id.in_([row["event_id"] for row in openings])
        upsert(db, STATS, KEY, _add_counts, columns=_OPENED, select=_opened(where, Opening.contact_id.not_in(missing)))
    if clicks:
        where = Click.event_id.in_([row["event_id"] for row in clicks])
        upsert(db, STATS, KEY, _add_counts, columns=_CLICKED, select=_clicked(where, Click.contact_id.not_in(missing)))
    after = _group_sums(db, keys)
    _add_groups(db, {key: _minus(after.get(key, {}), before.get(key, {})) for key in before | after})
    hours: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for opening in openings:
        hours[(opening["campaign_id"], _epoch_hour(opening["opened_at"]))][0] += 1
    for click in clicks:
        hours[(click["campaign_id"], _epoch_hour(click["clicked_at"]))][1] += 1
    _add_hours(db, hours, +1)


# The event rows read by the unique event_id index, never by a scan: a scan would wait for
# the locks of rows another worker is inserting (and deadlock with it).
_BY_EVENT_ID = "FORCE INDEX (uq_{table}_event_id)"
_OPENED = ["campaign_id", "contact_id", "group_id", *OPEN_COLUMNS.values(), "first_opened_at"]
_CLICKED = ["campaign_id", "contact_id", "group_id", "clicks", "first_clicked_at"]


def _opened(*where: ColumnElement[bool]) -> Select[*tuple[Any, ...]]:
    """Per contact, the increments (_OPENED) of the openings matching `where`."""
    hint = _BY_EVENT_ID.format(table="openings")
    return (
        select(Opening.campaign_id, Opening.contact_id, Contact.group_id, *_open_sums(), func.min(Opening.opened_at))
        .join(Contact, Contact.id == Opening.contact_id)
        .where(*where)
        .group_by(Opening.campaign_id, Opening.contact_id, Contact.group_id)
        .with_hint(Opening, hint, dialect_name="mysql")
        .with_hint(Opening, hint, dialect_name="mariadb")
    )


def _clicked(*where: ColumnElement[bool]) -> Select[*tuple[Any, ...]]:
    """Per contact, the increments (_CLICKED) of the clicks matching `where`."""
    hint = _BY_EVENT_ID.format(table="clicks")
    return (
        select(Click.campaign_id, Click.contact_id, Contact.group_id, func.count(), func.min(Click.clicked_at))
        .join(Contact, Contact.id == Click.contact_id)
        .where(*where)
        .group_by(Click.campaign_id, Click.contact_id, Contact.group_id)
        .with_hint(Click, hint, dialect_name="mysql")
        .with_hint(Click, hint, dialect_name="mariadb")
    )


def _add_counts(new: Any) -> list[tuple[str, Any]]:
    """The update of an existing row by the increments `new` (a column not inserted is its
    default: 0 or NULL, which changes nothing)."""
    c = STATS.c
    first = earlier_of(c.first_opened_at, new.first_opened_at)
    return [
        *((name, c[name] + new[name]) for name in OPEN_COLUMNS.values()),
        ("clicks", c.clicks + new.clicks),
        ("first_opened_at", first),
        ("first_open_delay_us", delay_us(c.ref_at, first)),
        ("first_clicked_at", earlier_of(c.first_clicked_at, new.first_clicked_at)),
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
    db.execute(delete(GROUPS).where(GROUPS.c.campaign_id.in_(campaigns)) if campaigns else delete(GROUPS))
    sums = _group_sums_query(STATS.c.campaign_id.in_(campaigns) if campaigns else STATS.c.campaign_id.is_not(None))
    db.execute(insert(GROUPS).from_select([*GROUP_KEY, *GROUP_COUNTERS], sums))
    db.execute(
        delete(CampaignHour).where(CampaignHour.campaign_id.in_(campaigns)) if campaigns else delete(CampaignHour)
    )
    _add_hours(db, _hour_rows(db, where_openings, where_clicks), +1)
