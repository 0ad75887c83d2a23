"""Recompute the report counters from scratch: migrations, seeding, repairs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Executable, Select, bindparam, delete, insert, select

from app.models import CampaignHour, Click, Contact, Opening, Pixel
from app.services.counters.contacts import KEY, SELECTED, STATS, contact_rows, replace_all
from app.services.counters.groups import GROUP_COUNTERS, GROUP_KEY, GROUPS, group_sums_query
from app.services.counters.hours import add_hours, hour_queries, read_hours
from app.services.sql import DB, dialect_name, upsert_statement

CAMPAIGN = "rebuild_campaign_id"  # the parameter of the statements of one campaign


def rebuild(db: DB, campaign_id: int | None = None) -> None:
    """Recompute the counters of one campaign (None: of every campaign) from the source tables.
    Run it while nothing records events for that campaign (migration, seeding, repair)."""
    statements = _statements(dialect_name(db), campaign_id is not None)
    params = {CAMPAIGN: campaign_id} if campaign_id is not None else {}
    for statement in statements.in_order:
        db.execute(statement, params)
    add_hours(db, read_hours(db, statements.hours, params), +1)


@dataclass(frozen=True)
class _Statements:
    in_order: tuple[Executable, ...]  # contacts' rows; groups' rows (out, in); hours' rows out
    hours: list[tuple[int, Select[*tuple[Any, ...]]]]  # then the hours' rows in, by `add_hours`


@cache
def _statements(dialect: str, one_campaign: bool) -> _Statements:
    """The statements of `rebuild`, built once per dialect for one campaign (bound as CAMPAIGN)
    or for all (building them costs more than running them on a small database)."""
    groups: ColumnElement[bool] | None = None
    hours: ColumnElement[bool] | None = None
    if one_campaign:
        campaign = bindparam(CAMPAIGN, type_=BigInteger())
        where_contacts = Contact.campaign_id == campaign
        where_openings = Opening.campaign_id == campaign
        where_clicks = Click.campaign_id == campaign
        pixels = Pixel.contact_id.in_(select(Contact.id).where(where_contacts))
        stats = STATS.c.campaign_id == campaign
        groups = GROUPS.c.campaign_id == campaign
        hours = CampaignHour.campaign_id == campaign
    else:
        where_contacts = Contact.id.is_not(None)
        where_openings = Opening.id.is_not(None)
        where_clicks = Click.id.is_not(None)
        pixels = Pixel.id.is_not(None)
        stats = STATS.c.campaign_id.is_not(None)
    rows = contact_rows(where_contacts, where_openings, where_clicks, pixels)
    return _Statements(
        in_order=(
            upsert_statement(dialect, STATS, KEY, replace_all, columns=SELECTED, select=rows),
            delete(GROUPS) if groups is None else delete(GROUPS).where(groups),
            insert(GROUPS).from_select([*GROUP_KEY, *GROUP_COUNTERS], group_sums_query(stats)),
            delete(CampaignHour) if hours is None else delete(CampaignHour).where(hours),
        ),
        hours=hour_queries(where_openings, where_clicks),
    )
