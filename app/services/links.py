"""Tracked links of a campaign and the per-contact click URLs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Campaign, Contact, Link, User
from app.services.common import apply_changes, owned, paginate


def get_link(db: Session, user: User, link_id: int) -> Link:
    stmt = select(Link).join(Campaign, Campaign.id == Link.campaign_id).where(Link.id == link_id)
    link = db.scalar(owned(stmt, user))
    if link is None:
        raise NotFound("Link not found.")
    return link


def list_links(db: Session, campaign: Campaign, *, limit: int, offset: int) -> tuple[Sequence[Link], int]:
    return paginate(
        db, select(Link).where(Link.campaign_id == campaign.id).order_by(Link.id), limit=limit, offset=offset
    )


def _stored(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("url") is not None:
        data["url"] = str(data["url"])
    return data


def create_link(db: Session, campaign: Campaign, data: dict[str, Any]) -> Link:
    link = Link(campaign_id=campaign.id, uuid=uuid.uuid4().hex, **_stored(data))
    db.add(link)
    db.commit()
    return link


def update_link(db: Session, link: Link, changes: dict[str, Any]) -> Link:
    apply_changes(link, _stored(changes))
    db.commit()
    return link


def delete_link(db: Session, link: Link) -> None:
    db.delete(link)  # clicks: ON DELETE CASCADE
    db.commit()


def contact_of_link_campaign(db: Session, link: Link, contact_id: int) -> Contact:
    contact = db.scalar(select(Contact).where(Contact.id == contact_id, Contact.campaign_id == link.campaign_id))
    if contact is None:
        raise NotFound("Contact not found in this link's campaign.")
    return contact
