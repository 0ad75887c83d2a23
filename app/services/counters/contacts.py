"""Contact counters (`contact_stats`): one row per contact, recomputed from the source tables.

`refresh_contacts`: after any change other than the ingest, the owner (session.py) recomputes
the touched contacts' rows from the source tables (an INSERT ... SELECT: on MariaDB it reads the
latest committed rows under shared locks, so it cannot miss an opening a worker commits
meanwhile), and moves their groups'; `forget_contacts` before contacts are deleted;
`count_new_contacts` after an INSERT of contacts (the bulk import), the same rows for less.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Executable,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    select,
    update,
)

from app.models import (
    MACHINE_CLIENTS,
    OPEN_COLUMNS,
    Click,
    ClientKind,
    Contact,
    ContactStats,
    ContactStatus,
    Opening,
    Pixel,
)
from app.services.counters.groups import add_groups, group_sums, group_sums_query, lock_groups, minus, read_group_sums
from app.services.sql import DB, delay_us, dialect_name, upsert_statement

CHUNK = 500
CONTACT_IDS = "contact_ids"  # the expanding parameter of _refresh_statements: a chunk of ids
STATS: Table = ContactStats.__table__  # type: ignore[assignment]
KEY = ("campaign_id", "contact_id")
COLUMNS = [column.name for column in STATS.columns]
_KNOWN = [kind.value for kind in ClientKind if kind is not ClientKind.unknown]
_MACHINE = sorted(kind.value for kind in MACHINE_CLIENTS)


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def open_sums() -> list[Any]:
    """Per client kind (OPEN_COLUMNS), the number of openings of that kind (an aggregate)."""
    sums = []
    for kind, name in OPEN_COLUMNS.items():
        hit = Opening.client.not_in(_KNOWN) if kind is ClientKind.unknown else Opening.client == kind.value
        sums.append(func.sum(case((hit, 1), else_=0)).label(name))
    return sums


def click_sums() -> list[Any]:
    """The number of clicks, of human clicks (a `browser` client) and of machine clicks (a
    MACHINE_CLIENTS class); the rest (`unknown`, unrecognised values) is in neither."""
    return [
        func.count().label("clicks"),
        func.sum(case((Click.client == ClientKind.browser.value, 1), else_=0)).label("human_clicks"),
        func.sum(case((Click.client.in_(_MACHINE), 1), else_=0)).label("machine_clicks"),
    ]


def contact_rows(
    contacts: ColumnElement[bool], openings: ColumnElement[bool], clicks: ColumnElement[bool], pixels: Any
) -> Select[Any]:
    o = (
        select(Opening.contact_id.label("cid"), *open_sums(), func.min(Opening.opened_at).label("first"))
        .where(openings)
        .group_by(Opening.contact_id)
        .subquery("o")
    )
    k = (
        select(Click.contact_id.label("cid"), *click_sums(), func.min(Click.clicked_at).label("first"))
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
            func.coalesce(k.c.clicks, 0),
            func.coalesce(k.c.human_clicks, 0),
            func.coalesce(k.c.machine_clicks, 0),
            k.c.first,
        )
        .select_from(Contact)
        .outerjoin(ps, ps.c.cid == Contact.id)
        .outerjoin(o, o.c.cid == Contact.id)
        .outerjoin(k, k.c.cid == Contact.id)
        .where(contacts)
    )


# The order of contact_rows' columns.
SELECTED = [
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
    "human_clicks",
    "machine_clicks",
    "first_clicked_at",
]
assert sorted(SELECTED) == sorted(COLUMNS), "contact_stats columns and their recompute disagree"


def replace_all(new: Any) -> list[tuple[str, Any]]:
    return [(name, new[name]) for name in SELECTED if name not in KEY]


def refresh_contacts(db: DB, contact_ids: Iterable[int]) -> None:
    """Recompute the rows of these contacts (created, edited, or whose pixels/openings/clicks
    changed), and their groups'. Deleted contacts have no row left (ON DELETE CASCADE): see
    `forget_contacts`."""
    recompute, sums = _refresh_statements(dialect_name(db))
    for chunk in _chunks(contact_ids):
        params = {CONTACT_IDS: chunk}
        before = read_group_sums(db, sums, params)
        db.execute(recompute, params)
        after = read_group_sums(db, sums, params)
        add_groups(db, {key: minus(after.get(key, {}), before.get(key, {})) for key in before | after})


@cache
def _refresh_statements(dialect: str) -> tuple[Executable, Select[Any]]:
    """The recompute of a chunk of contacts' rows and the (locking) sums of their groups, built
    once per dialect: building them costs several times what running them does (every flush
    that touches a contact runs them); the chunk is bound when they run (CONTACT_IDS)."""
    ids = bindparam(CONTACT_IDS, expanding=True, type_=BigInteger())
    rows = contact_rows(
        Contact.id.in_(ids),
        Opening.contact_id.in_(ids),
        Click.contact_id.in_(ids),
        Pixel.contact_id.in_(ids),
    )
    recompute = upsert_statement(dialect, STATS, KEY, replace_all, columns=SELECTED, select=rows)
    return recompute, group_sums_query(STATS.c.contact_id.in_(ids)).with_for_update()


NEW_CAMPAIGN, NEW_GROUP, NEW_EMAILS = "new_campaign_id", "new_group_id", "new_emails"
NEW_CHUNK = 2000  # new contacts per statement (by email: a short IN list of strings)


def count_new_contacts(db: DB, campaign_id: int, group_id: int, emails: list[str], sent: int) -> None:
    """After an INSERT of these contacts of one group (new in this transaction: no pixel, opening
    or click can point at them yet), `sent` of them with the status `sent`: their rows, as
    `refresh_contacts` computes them (one INSERT ... SELECT per NEW_CHUNK contacts, found by the
    unique (campaign, group, email)), and their group's moved by what such rows sum to: as many
    contacts, `sent` sent, nothing else (no pixels, openings or clicks). `refresh_contacts` would
    read their ids, the (empty) sums before and the sums after, and aggregate their (absent)
    pixels, openings and clicks: 4 statements per 500 contacts instead of 1 per 2,000."""
    recompute = _new_contacts_statement(dialect_name(db))
    for start in range(0, len(emails), NEW_CHUNK):
        params = {NEW_CAMPAIGN: campaign_id, NEW_GROUP: group_id, NEW_EMAILS: emails[start : start + NEW_CHUNK]}
        db.execute(recompute, params)
    add_groups(db, {(campaign_id, group_id): {"contacts": len(emails), "sent": sent}})


@cache
def _new_contacts_statement(dialect: str) -> Executable:
    """`count_new_contacts`' recompute, built once per dialect (as `_refresh_statements`)."""
    new = (
        (Contact.campaign_id == bindparam(NEW_CAMPAIGN, type_=BigInteger()))
        & (Contact.group_id == bindparam(NEW_GROUP, type_=BigInteger()))
        & Contact.email.in_(bindparam(NEW_EMAILS, expanding=True, type_=String()))
    )
    rows = contact_rows(new, false(), false(), false())
    return upsert_statement(dialect, STATS, KEY, replace_all, columns=SELECTED, select=rows)


def move_reference(db: DB, where: ColumnElement[bool], matched: int) -> bool:
    """After an UPDATE of the contacts matching `where` (on `contacts`) that changed nothing but
    their status, sent_at or scheduled_at (`matched`: the rows it matched): move what depends on
    those, the contacts' `sent`, `ref_at` and delay to their first opening, and their groups'
    `sent` and `timed_openers`, in set-based statements (a bulk "mark sent" of 10,000 contacts
    recomputes no aggregate over their openings, clicks and pixels).

    The groups move by the difference read, with a locking read, from the contacts' old rows
    and new values; then the rows are updated. False (nothing done) when some contact has no
    row (written by hand): the caller recomputes them instead (`refresh_contacts`)."""
    s = STATS.c
    joined = and_(s.campaign_id == Contact.campaign_id, s.contact_id == Contact.id)
    sent = case((Contact.status == ContactStatus.sent.value, 1), else_=0)
    ref = func.coalesce(Contact.sent_at, Contact.scheduled_at)
    delay = case((s.first_opened_at.is_(None), None), else_=delay_us(ref, s.first_opened_at))
    deltas = (
        select(
            s.campaign_id,
            s.group_id,
            func.count().label("contacts"),
            func.sum(sent - cast(s.sent, Integer)).label("sent"),
            (func.count(delay) - func.count(s.first_open_delay_us)).label("timed_openers"),
        )
        .select_from(STATS.join(Contact, joined))
        .where(where)
        .group_by(s.campaign_id, s.group_id)
        .with_for_update()
    )
    moved: dict[tuple[int, int], dict[str, int]] = {}
    with_rows = 0
    for campaign_id, group_id, contacts, sent_delta, timed_delta in db.execute(deltas):
        moved[(int(campaign_id), int(group_id))] = {
            "sent": int(sent_delta or 0),
            "timed_openers": int(timed_delta or 0),
        }
        with_rows += int(contacts)
    if with_rows < matched:
        return False
    db.execute(update(STATS).where(joined, where).values(sent=sent, ref_at=ref, first_open_delay_us=delay))
    add_groups(db, moved)
    return True


def forget_contacts(db: DB, contact_ids: Iterable[int]) -> None:
    """Before deleting these contacts: take their rows off their groups' (the contacts' own rows
    go with them, ON DELETE CASCADE). Not needed when their whole group goes."""
    for chunk in _chunks(contact_ids):
        gone = group_sums(db, STATS.c.contact_id.in_(chunk))
        add_groups(db, {key: minus({}, sums) for key, sums in gone.items()})


def lock_contacts(db: DB, contact_ids: Iterable[int], group_ids: Iterable[int] = ()) -> None:
    """Lock these contacts' rows, then their groups' and `group_ids`': the first locks of a change
    that takes hours off before it recomputes its contacts, so that its locks are taken in the
    order every writer takes them (contacts, groups, hours)."""
    groups = set(group_ids)
    for chunk in _chunks(contact_ids):
        groups.update(group for _campaign, group in group_sums(db, STATS.c.contact_id.in_(chunk)))
    lock_groups(db, groups)
