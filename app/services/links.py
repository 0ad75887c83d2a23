"""Tracked links of a campaign and the per-contact click URLs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Campaign, Contact, Link, User
from app.schemas.tracking import LinkCreate, LinkUpdate
from app.services.common import apply_changes, get_owned, paginate, read_owned

if TYPE_CHECKING:
    from app.fastread import OwnedReads, Row


def get_link(db: Session, user: User, link_id: int) -> Link:
    return get_owned(db, user, Link, link_id, (Campaign, Campaign.id == Link.campaign_id))


async def read_link(reads: OwnedReads, user: User, link_id: int) -> Row:
    return await read_owned(reads, user, Link, link_id, (Campaign, Campaign.id == Link.campaign_id))


def list_links(db: Session, campaign: Campaign, *, limit: int, offset: int) -> tuple[Sequence[Link], int]:
    return paginate(
        db, select(Link).where(Link.campaign_id == campaign.id).order_by(Link.id), limit=limit, offset=offset
    )


def create_link(db: Session, campaign: Campaign, data: LinkCreate) -> Link:
    attribution = campaign.attribution_default if data.attribution is None else data.attribution
    link = Link(
        campaign_id=campaign.id, uuid=uuid.uuid4().hex, url=str(data.url), name=data.name, attribution=attribution
    )
    db.add(link)
    db.flush()
    return link


def update_link(db: Session, link: Link, patch: LinkUpdate) -> Link:
    changes = patch.changes()
    if changes.get("url") is not None:
        changes["url"] = str(changes["url"])
    apply_changes(link, changes)
    db.flush()
    return link


def delete_link(db: Session, link: Link) -> None:
    db.delete(link)  # clicks: ON DELETE CASCADE
    db.flush()


def contact_of_link_campaign(db: Session, link: Link, contact_id: int) -> Contact:
    contact = db.scalar(select(Contact).where(Contact.id == contact_id, Contact.campaign_id == link.campaign_id))
    if contact is None:
        raise NotFound("Contact not found in this link's campaign.")
    return contact
