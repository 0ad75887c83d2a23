"""Campaigns and their A/B groups. A user sees and changes only their own (admins: all)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ValidationFailed
from app.models import Campaign, Group, Tracking, User
from app.schemas.campaign import CampaignCreate, CampaignUpdate, GroupCreate, GroupUpdate
from app.services.common import apply_changes, conflict, get_owned, owned, paginate, read_owned
from app.tracking import origins as origins_cache

if TYPE_CHECKING:
    from app.fastread import OwnedReads, Row

DATES_OUT_OF_ORDER = "ends_at must be after starts_at"


def get_campaign(db: Session, user: User, campaign_id: int) -> Campaign:
    return get_owned(db, user, Campaign, campaign_id)


async def read_campaign(reads: OwnedReads, user: User, campaign_id: int) -> Row:
    """The campaign's attributes, read on the event loop (GET; app/fastread.py)."""
    return await read_owned(reads, user, Campaign, campaign_id)


def list_campaigns(db: Session, user: User, *, limit: int, offset: int) -> tuple[Sequence[Campaign], int]:
    return paginate(db, owned(select(Campaign), user).order_by(Campaign.id), limit=limit, offset=offset)


def _dates_in_order(starts_at: datetime | None, ends_at: datetime | None) -> bool:
    return starts_at is None or ends_at is None or ends_at > starts_at


def create_campaign(db: Session, user: User, data: CampaignCreate) -> Campaign:
    if not _dates_in_order(data.starts_at, data.ends_at):
        # The body as a whole is wrong (the answer the body's own validator gave before this rule
        # moved here: same loc, msg and type).
        raise ValidationFailed([{"loc": ["body"], "msg": f"Value error, {DATES_OUT_OF_ORDER}", "type": "value_error"}])
    campaign = Campaign(
        owner_id=user.id,
        name=data.name,
        description=data.description,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        tracking_default=Tracking(data.tracking_default).value,
        attribution_default=data.attribution_default,
        conversion_origins=list(data.conversion_origins),
    )
    db.add(campaign)
    db.flush()
    if campaign.conversion_origins:
        origins_changed(db)
    return campaign


def update_campaign(db: Session, campaign: Campaign, patch: CampaignUpdate) -> Campaign:
    changes = patch.changes()
    if not _dates_in_order(changes.get("starts_at", campaign.starts_at), changes.get("ends_at", campaign.ends_at)):
        # Checked against the stored values too: located at ends_at, whichever date was sent.
        raise ValidationFailed([{"loc": ["body", "ends_at"], "msg": DATES_OUT_OF_ORDER, "type": "value_error"}])
    if "tracking_default" in changes:  # (for contacts created from now on: existing ones keep theirs)
        changes["tracking_default"] = Tracking(changes["tracking_default"]).value
    origins = "conversion_origins" in changes and changes["conversion_origins"] != campaign.conversion_origins
    apply_changes(campaign, changes)
    db.flush()
    if origins:
        origins_changed(db)
    return campaign


def delete_campaign(db: Session, campaign: Campaign) -> None:
    had_origins = bool(campaign.conversion_origins)
    db.delete(campaign)  # groups, contacts, pixels, openings, links, clicks, conversions: ON DELETE CASCADE
    db.flush()
    if had_origins:
        origins_changed(db)


def origins_changed(db: Session) -> None:
    """The call point for the public intake's in-process origins cache (`POST /e`'s CORS,
    docs/conversions.md): called, in the request's transaction, whenever a campaign's
    `conversion_origins` change (created with some, edited, deleted): once the session commits,
    this process's cache reloads and the other API processes are told (app/tracking/origins.py)."""
    origins_cache.changed(db)


def get_group(db: Session, user: User, group_id: int) -> Group:
    return get_owned(db, user, Group, group_id, (Campaign, Campaign.id == Group.campaign_id))


async def read_group(reads: OwnedReads, user: User, group_id: int) -> Row:
    return await read_owned(reads, user, Group, group_id, (Campaign, Campaign.id == Group.campaign_id))


def list_groups(db: Session, campaign: Campaign, *, limit: int, offset: int) -> tuple[Sequence[Group], int]:
    stmt = select(Group).where(Group.campaign_id == campaign.id).order_by(Group.id)
    return paginate(db, stmt, limit=limit, offset=offset)


def _check_group_name(db: Session, campaign_id: int, name: str, *, except_id: int | None = None) -> None:
    existing = db.scalar(select(Group.id).where(Group.campaign_id == campaign_id, Group.name == name))
    if existing is not None and existing != except_id:
        raise conflict(["body", "name"], "A group with this name already exists in this campaign.")


def create_group(db: Session, campaign: Campaign, data: GroupCreate) -> Group:
    _check_group_name(db, campaign.id, data.name)
    group = Group(campaign_id=campaign.id, name=data.name, description=data.description)
    db.add(group)
    db.flush()
    return group


def update_group(db: Session, group: Group, patch: GroupUpdate) -> Group:
    changes: dict[str, Any] = patch.changes()
    if "name" in changes:
        _check_group_name(db, group.campaign_id, changes["name"], except_id=group.id)
    apply_changes(group, changes)
    db.flush()
    return group


def delete_group(db: Session, group: Group) -> None:
    db.delete(group)  # contacts and everything under them: ON DELETE CASCADE
    db.flush()
