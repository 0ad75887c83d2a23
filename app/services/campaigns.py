"""Campaigns and their A/B groups. A user sees and changes only their own (admins: all)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound, ValidationFailed
from app.models import Campaign, Group, User
from app.schemas.campaign import check_date_range
from app.services.common import apply_changes, conflict, owned, paginate


def get_campaign(db: Session, user: User, campaign_id: int) -> Campaign:
    campaign = db.scalar(owned(select(Campaign).where(Campaign.id == campaign_id), user))
    if campaign is None:
        raise NotFound("Campaign not found.")
    return campaign


def list_campaigns(db: Session, user: User, *, limit: int, offset: int) -> tuple[Sequence[Campaign], int]:
    return paginate(db, owned(select(Campaign), user).order_by(Campaign.id), limit=limit, offset=offset)


def create_campaign(db: Session, user: User, data: dict[str, Any]) -> Campaign:
    campaign = Campaign(owner_id=user.id, **data)
    db.add(campaign)
    db.commit()
    return campaign


def _check_dates(starts_at: datetime | None, ends_at: datetime | None) -> None:
    try:
        check_date_range(starts_at, ends_at)
    except ValueError as exc:
        raise ValidationFailed([{"loc": ["body", "ends_at"], "msg": str(exc), "type": "value_error"}]) from None


def update_campaign(db: Session, campaign: Campaign, changes: dict[str, Any]) -> Campaign:
    _check_dates(changes.get("starts_at", campaign.starts_at), changes.get("ends_at", campaign.ends_at))
    apply_changes(campaign, changes)
    db.commit()
    return campaign


def delete_campaign(db: Session, campaign: Campaign) -> None:
    db.delete(campaign)  # groups, contacts, pixels, openings, links, clicks: ON DELETE CASCADE
    db.commit()


def get_group(db: Session, user: User, group_id: int) -> Group:
    stmt = select(Group).join(Campaign, Campaign.id == Group.campaign_id).where(Group.id == group_id)
    group = db.scalar(owned(stmt, user))
    if group is None:
        raise NotFound("Group not found.")
    return group


def list_groups(db: Session, campaign: Campaign, *, limit: int, offset: int) -> tuple[Sequence[Group], int]:
    stmt = select(Group).where(Group.campaign_id == campaign.id).order_by(Group.id)
    return paginate(db, stmt, limit=limit, offset=offset)


def _check_group_name(db: Session, campaign_id: int, name: str, *, except_id: int | None = None) -> None:
    existing = db.scalar(select(Group.id).where(Group.campaign_id == campaign_id, Group.name == name))
    if existing is not None and existing != except_id:
        raise conflict(["body", "name"], "A group with this name already exists in this campaign.")


def create_group(db: Session, campaign: Campaign, data: dict[str, Any]) -> Group:
    _check_group_name(db, campaign.id, data["name"])
    group = Group(campaign_id=campaign.id, **data)
    db.add(group)
    db.commit()
    return group


def update_group(db: Session, group: Group, changes: dict[str, Any]) -> Group:
    if "name" in changes:
        _check_group_name(db, group.campaign_id, changes["name"], except_id=group.id)
    apply_changes(group, changes)
    db.commit()
    return group


def delete_group(db: Session, group: Group) -> None:
    db.delete(group)  # contacts and everything under them: ON DELETE CASCADE
    db.commit()
