"""The backend API's conversions (`POST /api/v1/conversions`, docs/conversions.md): each named by
an attribution token or by a contact id of the caller's, all or nothing, stored by the one store
(app/tracking/conversions.store) in the request's transaction.

A token that does not open (forged, altered, expired), or names a campaign the caller cannot
see, and a contact id that is not the caller's, are all one answer: 404 locating each such
conversion. What the consent rules then leave out (tracking `off`; the token's contact or group
deleted since the click) is `skipped`, not an error: the token was genuine. The contacts and
groups are read with locking reads, the store's own, so what is counted here is what it stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Campaign, Contact, Group, Tracking, User
from app.models.conversion import ConversionSource
from app.schemas.conversions_api import ConversionPost, ConversionsRecorded
from app.tracking.attribution import Attribution, AttributionCodec
from app.tracking.conversions import CHUNK, ConversionIn, store
from app.tracking.events import new_event_id

_OFF = Tracking.off.value


def _rows(db: Session, query: Any, ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    found: dict[int, tuple[Any, ...]] = {}
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        for row in db.execute(query(ordered[start : start + CHUNK])):
            found[row[0]] = tuple(row[1:])
    return found


def _visible(user: User, owner_id: int) -> bool:
    return user.is_admin or owner_id == user.id


def record(
    db: Session,
    user: User,
    posts: Sequence[ConversionPost],
    codec: AttributionCodec,
    *,
    locs: Sequence[tuple[str | int, ...]],
    now: datetime | None = None,
) -> ConversionsRecorded:
    """Record `posts` (`locs[i]`: where post i is in the body, for the 404's `detail[].loc`)."""
    now = now or datetime.now(UTC)
    opened: list[Attribution | None] = [
        codec.open(post.token, now=now.timestamp()) if post.token is not None else None for post in posts
    ]
    owners = _rows(
        db,
        lambda ids: select(Campaign.id, Campaign.owner_id).where(Campaign.id.in_(ids)),
        [a.campaign_id for a in opened if a is not None],
    )
    contact_ids = [post.contact_id for post in posts if post.contact_id is not None]
    contact_ids += [a.contact_id for a in opened if a is not None and a.contact_id]
    contacts = _rows(
        db,
        lambda ids: (
            select(Contact.id, Contact.campaign_id, Contact.group_id, Contact.tracking, Campaign.owner_id)
            .join(Campaign, Campaign.id == Contact.campaign_id)
            .where(Contact.id.in_(ids))
            .with_for_update(read=True)
        ),
        contact_ids,
    )
    groups = _rows(
        db,
        lambda ids: select(Group.id, Group.campaign_id).where(Group.id.in_(ids)).with_for_update(read=True),
        [a.group_id for a in opened if a is not None and not a.contact_id],
    )
    missing: list[dict[str, Any]] = []
    kept: list[ConversionIn] = []
    skipped = 0
    for post, token, loc in zip(posts, opened, locs, strict=True):
        if post.contact_id is not None:
            contact = contacts.get(post.contact_id)
            if contact is None or not _visible(user, contact[3]):
                missing.append({"loc": ["body", *loc, "contact_id"], "msg": "Contact not found.", "type": "not_found"})
                continue
            campaign_id, group_id, contact_id, link_id, click_id = contact[0], contact[1], post.contact_id, None, None
            eligible = contact[2] != _OFF
        else:
            owner = owners.get(token.campaign_id) if token is not None else None
            if token is None or owner is None or not _visible(user, owner[0]):
                missing.append({"loc": ["body", *loc, "token"], "msg": "Token not valid.", "type": "not_found"})
                continue
            campaign_id, group_id, contact_id = token.campaign_id, token.group_id, token.contact_id
            link_id, click_id = token.link_id, token.click_event_id
            if contact_id:
                contact = contacts.get(contact_id)
                eligible = contact is not None and contact[0] == campaign_id and contact[2] != _OFF
            else:
                group = groups.get(group_id)
                eligible = group is not None and group[0] == campaign_id
        if not eligible:
            skipped += 1
            continue
        kept.append(
            ConversionIn(
                event_id="v" + new_event_id(),
                campaign_id=campaign_id,
                group_id=group_id,
                contact_id=contact_id,
                name=post.name,
                value=post.value,
                currency=post.currency,
                order_id=post.id,
                source=ConversionSource.api.value,
                occurred_at=post.occurred_at or now,
                link_id=link_id,
                click_event_id=click_id,
            )
        )
    if missing:
        raise NotFound(missing)
    recorded = store(db.connection(), kept, now=now)
    return ConversionsRecorded(received=len(posts), recorded=recorded, duplicates=len(kept) - recorded, skipped=skipped)
