"""Manual create/correct/delete of openings (the tracking path records them automatically)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.models import Campaign, Contact, Opening, Pixel, User
from app.models.base import utcnow
from app.schemas.tracking import OpeningCreate, OpeningUpdate
from app.services import consent
from app.services.common import apply_changes, conflict, get_owned, paginate
from app.tracking.events import manual_event_id

TRACKING_OFF = "tracking_off"  # the 409's code: an opening recorded by hand for a contact whose tracking is off
MANUAL_REASON = "api:manual"  # the `reason` of an opening recorded, or reclassified, through the API


def get_opening(db: Session, user: User, opening_id: int) -> Opening:
    """An opening of a contact whose consent is `full`; the others' are never shown one by one
    (docs/consent.md): NotFound, as for a missing one."""
    return get_owned(
        db,
        user,
        Opening,
        opening_id,
        (Contact, and_(Contact.id == Opening.contact_id, consent.listed())),
        (Campaign, Campaign.id == Opening.campaign_id),
    )


def list_openings(db: Session, pixel: Pixel, *, limit: int, offset: int) -> tuple[Sequence[Opening], int]:
    """The pixel's openings, none when its contact's consent is not `full` (docs/consent.md)."""
    stmt = (
        select(Opening)
        .join(Contact, Contact.id == Opening.contact_id)
        .where(Opening.pixel_id == pixel.id, consent.listed())
        .order_by(Opening.opened_at, Opening.id)
    )
    return paginate(db, stmt, limit=limit, offset=offset)


def create_opening(db: Session, pixel: Pixel, data: OpeningCreate) -> Opening:
    """The client's `event_id` is an idempotency key of this pixel only (stored in the manual
    namespace, see app/tracking/events.manual_event_id): it never meets a tracking id nor another
    pixel's keys, so a 409 tells only about this pixel's own openings."""
    contact = db.get(Contact, pixel.contact_id)
    assert contact is not None  # FK
    if contact.tracking == consent.OFF:
        raise Conflict(
            [
                {
                    "loc": ["path", "pixel_id"],
                    "msg": "The contact's tracking is off: nothing is recorded.",
                    "type": "conflict",
                }
            ],
            code=TRACKING_OFF,
        )
    identified = contact.tracking == consent.FULL  # anonymous: counted, without IP and user agent
    key = data.event_id or uuid.uuid4().hex
    event_id = manual_event_id(pixel.id, key)
    # Also the key as stored before namespaces existed (an opening of this pixel recorded by an older release).
    taken = select(Opening.id).where(Opening.pixel_id == pixel.id, Opening.event_id.in_([event_id, key]))
    if db.scalar(taken.limit(1)) is not None:
        raise conflict(["body", "event_id"], "An opening of this pixel with this event_id was already recorded.")
    opening = Opening(
        pixel_id=pixel.id,
        contact_id=contact.id,
        campaign_id=contact.campaign_id,
        event_id=event_id,
        opened_at=data.opened_at or utcnow(),
        ip=data.ip if identified else None,
        user_agent=data.user_agent if identified else None,
        client=data.client,
        reason=MANUAL_REASON,
    )
    db.add(opening)
    db.flush()
    return opening


def update_opening(db: Session, opening: Opening, patch: OpeningUpdate) -> Opening:
    changes = patch.changes()
    if "client" in changes:
        changes["reason"] = MANUAL_REASON
    apply_changes(opening, changes)
    db.flush()
    return opening


def delete_opening(db: Session, opening: Opening) -> None:
    db.delete(opening)
    db.flush()
