"""Manual create/correct/delete of openings (the tracking path records them automatically)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Campaign, Contact, Opening, Pixel, User
from app.models.base import utcnow
from app.services import rollups
from app.services.common import apply_changes, conflict, owned, paginate


def get_opening(db: Session, user: User, opening_id: int) -> Opening:
    stmt = select(Opening).join(Campaign, Campaign.id == Opening.campaign_id).where(Opening.id == opening_id)
    opening = db.scalar(owned(stmt, user))
    if opening is None:
        raise NotFound("Opening not found.")
    return opening


def list_openings(db: Session, pixel: Pixel, *, limit: int, offset: int) -> tuple[Sequence[Opening], int]:
    stmt = select(Opening).where(Opening.pixel_id == pixel.id).order_by(Opening.opened_at, Opening.id)
    return paginate(db, stmt, limit=limit, offset=offset)


def create_opening(db: Session, pixel: Pixel, data: dict[str, Any]) -> Opening:
    event_id = data.pop("event_id", None) or uuid.uuid4().hex
    if db.scalar(select(Opening.id).where(Opening.event_id == event_id)) is not None:
        raise conflict(["body", "event_id"], "An opening with this event_id was already recorded.")
    contact = db.get(Contact, pixel.contact_id)
    assert contact is not None  # FK
    data["opened_at"] = data.get("opened_at") or utcnow()
    opening = Opening(
        pixel_id=pixel.id, contact_id=contact.id, campaign_id=contact.campaign_id, event_id=event_id, **data
    )
    db.add(opening)
    db.flush()
    _counted(db, opening)
    db.commit()
    return opening


def _counted(db: Session, opening: Opening) -> None:
    """Update the report counters once the opening is in its new state."""
    rollups.count_hours(db, openings=Opening.id == opening.id)
    rollups.refresh_contacts(db, [opening.contact_id])


def update_opening(db: Session, opening: Opening, changes: dict[str, Any]) -> Opening:
    rollups.forget_hours(db, openings=Opening.id == opening.id)
    apply_changes(opening, changes)
    db.flush()
    _counted(db, opening)
    db.commit()
    return opening


def delete_opening(db: Session, opening: Opening) -> None:
    rollups.forget_hours(db, openings=Opening.id == opening.id)
    db.delete(opening)
    db.flush()
    rollups.refresh_contacts(db, [opening.contact_id])
    db.commit()
