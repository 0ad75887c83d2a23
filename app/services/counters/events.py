"""The ingest path: add the openings/clicks a batch inserted to the three counter tables.

Increments and "earlier first opening" updates, computed by the database from the rows just
inserted; commutative, so concurrent workers need no coordination beyond the row locks, always
taken in the same order: contacts, groups, hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from app.models import OPEN_COLUMNS, Click, Contact, Opening
from app.services.counters.contacts import KEY, STATS, click_sums, open_sums, refresh_contacts
from app.services.counters.groups import add_groups, group_sums, minus
from app.services.counters.hours import add_hours, epoch_hour
from app.services.sql import DB, by_event_id, delay_us, earlier_of, force_index, in_list, upsert


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
    # same order: contacts, then groups, then hours). Locking reads: see groups.group_sums.
    keys = contact_keys(by_campaign)
    before = group_sums(db, keys, index=BY_CONTACT)
    missing: list[int] = []
    if sum(sums["contacts"] for sums in before.values()) < sum(len(ids) for ids in by_campaign.values()):
        # Contacts without a row (written to the database by hand): theirs from the source rows,
        # which already hold this batch's events, and the batch moves them no further.
        with_rows = set(db.scalars(select(STATS.c.contact_id).where(keys)))
        missing = sorted(set().union(*by_campaign.values()) - with_rows)
        refresh_contacts(db, missing)
        before = group_sums(db, keys, index=BY_CONTACT)
    if openings:
        where = in_list(Opening.event_id, [row["event_id"] for row in openings])
        upsert(db, STATS, KEY, _add_counts, columns=_OPENED, select=_opened(where, Opening.contact_id.not_in(missing)))
    if clicks:
        where = in_list(Click.event_id, [row["event_id"] for row in clicks])
        upsert(db, STATS, KEY, _add_counts, columns=_CLICKED, select=_clicked(where, Click.contact_id.not_in(missing)))
    after = group_sums(db, keys, index=BY_CONTACT)
    add_groups(db, {key: minus(after.get(key, {}), before.get(key, {})) for key in before | after})
    hours: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for opening in openings:
        hours[(opening["campaign_id"], epoch_hour(opening["opened_at"]))][0] += 1
    for click in clicks:
        hours[(click["campaign_id"], epoch_hour(click["clicked_at"]))][1] += 1
    add_hours(db, hours, +1)


def contact_keys(by_campaign: dict[int, set[int]]) -> ColumnElement[bool]:
    """The contact_stats rows of these contacts (campaign → contact ids), by primary key."""
    return or_(
        *(
            and_(STATS.c.campaign_id == campaign_id, in_list(STATS.c.contact_id, sorted(ids)))
            for campaign_id, ids in sorted(by_campaign.items())
        )
    )


# The contacts' rows read by their primary key (campaign, contact). MariaDB chose the
# (campaign, group, …) index for the GROUP BY instead: it scanned, and locked, every contact of
# the campaign in each batch, so batches of one campaign ran one at a time, each slower the larger
# the campaign (115 ms per read at 106,000 contacts, against 0.24 ms by key; docs/benchmarks.md).
BY_CONTACT = "PRIMARY"
_OPENED = ["campaign_id", "contact_id", "group_id", *OPEN_COLUMNS.values(), "first_opened_at"]
_CLICKED = ["campaign_id", "contact_id", "group_id", "clicks", "human_clicks", "machine_clicks", "first_clicked_at"]


def _opened(*where: ColumnElement[bool]) -> Select[*tuple[Any, ...]]:
    """Per contact, the increments (_OPENED) of the openings matching `where`."""
    query = (
        select(Opening.campaign_id, Opening.contact_id, Contact.group_id, *open_sums(), func.min(Opening.opened_at))
        .join(Contact, Contact.id == Opening.contact_id)
        .where(*where)
        .group_by(Opening.campaign_id, Opening.contact_id, Contact.group_id)
    )
    return force_index(query, Opening, by_event_id(Opening))


def _clicked(*where: ColumnElement[bool]) -> Select[*tuple[Any, ...]]:
    """Per contact, the increments (_CLICKED) of the clicks matching `where`."""
    query = (
        select(Click.campaign_id, Click.contact_id, Contact.group_id, *click_sums(), func.min(Click.clicked_at))
        .join(Contact, Contact.id == Click.contact_id)
        .where(*where)
        .group_by(Click.campaign_id, Click.contact_id, Contact.group_id)
    )
    return force_index(query, Click, by_event_id(Click))


def _add_counts(new: Any) -> list[tuple[str, Any]]:
    """The update of an existing row by the increments `new` (a column not inserted is its
    default: 0 or NULL, which changes nothing)."""
    c = STATS.c
    first = earlier_of(c.first_opened_at, new.first_opened_at)
    return [
        *((name, c[name] + new[name]) for name in OPEN_COLUMNS.values()),
        *((name, c[name] + new[name]) for name in ("clicks", "human_clicks", "machine_clicks")),
        ("first_opened_at", first),
        ("first_open_delay_us", delay_us(c.ref_at, first)),
        ("first_clicked_at", earlier_of(c.first_clicked_at, new.first_clicked_at)),
    ]
