"""Recompute the report counters from scratch: migrations, seeding, repairs."""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from app.models import CampaignHour, Click, Contact, Opening, Pixel
from app.services.counters.contacts import KEY, SELECTED, STATS, contact_rows, replace_all
from app.services.counters.groups import GROUP_COUNTERS, GROUP_KEY, GROUPS, group_sums_query
from app.services.counters.hours import add_hours, hour_rows
from app.services.sql import DB, upsert


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
        replace_all,
        columns=SELECTED,
        select=contact_rows(where_contacts, where_openings, where_clicks, pixels),
    )
    db.execute(delete(GROUPS).where(GROUPS.c.campaign_id.in_(campaigns)) if campaigns else delete(GROUPS))
    sums = group_sums_query(STATS.c.campaign_id.in_(campaigns) if campaigns else STATS.c.campaign_id.is_not(None))
    db.execute(insert(GROUPS).from_select([*GROUP_KEY, *GROUP_COUNTERS], sums))
    db.execute(
        delete(CampaignHour).where(CampaignHour.campaign_id.in_(campaigns)) if campaigns else delete(CampaignHour)
    )
    add_hours(db, hour_rows(db, where_openings, where_clicks), +1)
