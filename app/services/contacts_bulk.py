"""The same change for up to 10,000 contacts of a group (`PATCH /groups/{group_id}/contacts`):
status, sent time and tracking consent, all or nothing, in set-based statements.

The contacts are changed by ORM UPDATE statements (one per chunk of ids), so the report counters'
owner (app/services/counters/session.py) recomputes the contacts' rows and moves their groups'
in the same transaction, in chunks, exactly as it does for a single PATCH; an UPDATE of the
consent alone moves no counter and costs one statement per chunk.
"""

from __future__ import annotations

from typing import Any, NoReturn

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Contact, ContactStatus, Group, Tracking
from app.models.base import utcnow
from app.schemas.contact import ContactBatchUpdate
from app.services import consent

CHUNK = 1000


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[start : start + CHUNK] for start in range(0, len(ids), CHUNK)]


def _values(body: ContactBatchUpdate) -> dict[str, Any]:
    """The SET of the UPDATE. A contact marked sent without a time keeps its own `sent_at`, or
    was sent now (app/services/contacts.update_contact: a sent contact always has one)."""
    values: dict[str, Any] = {}
    if body.status is not None:
        values["status"] = ContactStatus(body.status).value
    if body.sent_at is not None:
        values["sent_at"] = body.sent_at
    elif body.status == ContactStatus.sent:
        now = bindparam("now_sent_at", utcnow(), type_=Contact.__table__.c.sent_at.type)
        values["sent_at"] = func.coalesce(Contact.sent_at, now)
    if body.tracking is not None:
        values["tracking"] = Tracking(body.tracking).value
    return values


def update_group_contacts(db: Session, group: Group, body: ContactBatchUpdate) -> int:
    """Apply `body` to its contacts, all of which must belong to `group` (else NotFound locating
    every position of the others: missing, in another group, someone else's; the request's
    transaction is then rolled back, so nothing changes); the number of distinct contacts."""
    ids = sorted(set(body.ids))
    values = _values(body)
    matched = 0
    for chunk in _chunks(ids):
        result = db.execute(
            update(Contact)
            .where(Contact.group_id == group.id, Contact.id.in_(chunk))
            .values(values)
            .execution_options(synchronize_session=False)
        )
        matched += result.rowcount  # type: ignore[attr-defined]  # (rows matched, changed or not)
    if matched < len(ids):
        _not_in_group(db, group, body.ids)
    if body.tracking is not None and Tracking(body.tracking) is not Tracking.full:
        # Withdrawn consent: only contacts that were `full` hold any IP or user agent.
        consent.erase_identifying(db, ids)
    return len(ids)


def _not_in_group(db: Session, group: Group, sent: list[int]) -> NoReturn:
    found: set[int] = set()
    for chunk in _chunks(sorted(set(sent))):
        found.update(db.scalars(select(Contact.id).where(Contact.group_id == group.id, Contact.id.in_(chunk))))
    # Every position of an offending id, located as a validation error is: the client reads the
    # id at body.ids[loc[2]].
    raise NotFound(
        [
            {"loc": ["body", "ids", index], "msg": f"No contact {contact_id} in this group.", "type": "not_found"}
            for index, contact_id in enumerate(sent)
            if contact_id not in found
        ]
    )
