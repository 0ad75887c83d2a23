"""Group counters (`group_counts`): the sums of their contacts' `contact_stats` rows.

A group's row moves by the difference between its contacts' rows after and before a change
(read with locking reads, so a worker committing meanwhile is either wholly before or wholly after).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, Table, and_, case, func, or_, select

from app.models import OPEN_COLUMNS, ContactStats, GroupCounts
from app.services.sql import DB, force_index, upsert

STATS: Table = ContactStats.__table__  # type: ignore[assignment]
GROUPS: Table = GroupCounts.__table__  # type: ignore[assignment]
GROUP_KEY = ("campaign_id", "group_id")
GROUP_COUNTERS = [column.name for column in GROUPS.columns if column.name not in GROUP_KEY]
GroupKey = tuple[int, int]
Sums = dict[str, int]  # GROUP_COUNTERS → value (a missing name: 0)


def group_sums_query(where: ColumnElement[bool], *, index: str | None = None) -> Select[Any]:
    """Per (campaign, group): the GROUP_COUNTERS of the contact_stats rows matching `where`,
    read through `index` on MySQL/MariaDB when named (FORCE INDEX)."""
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
        "human_clicks": func.sum(c.human_clicks),
        "machine_clicks": func.sum(c.machine_clicks),
        # A human click implies an open: the person saw the email with images off.
        "human_openers": _contacts(or_(c.opens_browser > 0, c.human_clicks > 0)),
        "inferred_openers": _contacts(and_(c.human_clicks > 0, c.opens_browser == 0)),
        "human_clickers": _contacts(c.human_clicks > 0),
    }
    assert list(sums) == GROUP_COUNTERS, "group_counts columns and their sums disagree"
    query = (
        select(c.campaign_id, c.group_id, *(sums[name].label(name) for name in GROUP_COUNTERS))
        .where(where)
        .group_by(c.campaign_id, c.group_id)
    )
    return query if index is None else force_index(query, STATS, index)


def _contacts(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """The number of contact_stats rows matching `condition` (an aggregate; 0, never NULL)."""
    return func.count(case((condition, 1)))


def minus(a: Sums, b: Sums) -> Sums:
    return {name: a.get(name, 0) - b.get(name, 0) for name in GROUP_COUNTERS}


def group_sums(db: DB, where: ColumnElement[bool], *, index: str | None = None) -> dict[GroupKey, Sums]:
    """The sums, read with a locking read: the latest committed rows and our own (a plain read
    on MariaDB would see the transaction's snapshot), and no one else's change until we commit.
    A locking read locks every row it scans: `index` names the one that reads only `where`'s."""
    return read_group_sums(db, group_sums_query(where, index=index).with_for_update())


def read_group_sums(db: DB, query: Select[Any], params: Mapping[str, Any] | None = None) -> dict[GroupKey, Sums]:
    """The sums of a `group_sums_query(...).with_for_update()` built beforehand, run with `params`."""
    found: dict[GroupKey, Sums] = {}
    for campaign_id, group_id, *values in db.execute(query, params):
        found[(int(campaign_id), int(group_id))] = {
            name: int(v or 0) for name, v in zip(GROUP_COUNTERS, values, strict=True)
        }
    return found


def add_groups(db: DB, deltas: dict[GroupKey, Sums]) -> None:
    """Move group rows by `deltas` (in key order: the same lock order in every transaction)."""
    rows = [
        {"campaign_id": campaign_id, "group_id": group_id, **{name: delta.get(name, 0) for name in GROUP_COUNTERS}}
        for (campaign_id, group_id), delta in sorted(deltas.items())
        if any(delta.values())
    ]
    upsert(db, GROUPS, GROUP_KEY, _add_group_counts, rows=rows)


def _add_group_counts(new: Any) -> list[tuple[str, Any]]:
    return [(name, GROUPS.c[name] + new[name]) for name in GROUP_COUNTERS]


def lock_groups(db: DB, group_ids: Iterable[int]) -> None:
    """Lock these groups' rows (in key order) before the change that will move them."""
    ids = sorted(set(group_ids))
    if ids:
        c = GROUPS.c
        db.execute(select(c.campaign_id, c.group_id).where(c.group_id.in_(ids)).order_by(*GROUP_KEY).with_for_update())
