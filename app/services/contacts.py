"""Scheduled contacts of a group, including the all-or-nothing bulk import."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, insert, select
from sqlalchemy.orm import Session

from app import cooperative
from app.errors import Conflict, ValidationFailed
from app.models import Campaign, Contact, ContactStatus, Group, Tracking, User
from app.models.base import utcnow
from app.schemas.contact import ContactCreate, ContactUpdate
from app.services import consent
from app.services.common import apply_changes, conflict, get_owned, paginate
from app.services.consent import FULL

CHUNK = 1000
INSERT_CHUNK = 2000  # contacts per INSERT statement of the bulk import
S = TypeVar("S", bound=Select[*tuple[Any, ...]])
MAX_REPORTED_ERRORS = 100
# The columns a new contact's row takes from its `ContactCreate` (a sample file's contact, a
# subclass, carries more).
_CREATED_FIELDS = set(ContactCreate.model_fields)


def get_contact(db: Session, user: User, contact_id: int) -> Contact:
    return get_owned(db, user, Contact, contact_id, (Campaign, Campaign.id == Contact.campaign_id))


def list_contacts(
    db: Session,
    group: Group,
    *,
    limit: int,
    offset: int,
    status: ContactStatus | None = None,
    scheduled_before: datetime | None = None,
    scheduled_after: datetime | None = None,
) -> tuple[Sequence[Contact], int]:
    stmt = filter_contacts(
        select(Contact).where(Contact.group_id == group.id),
        status=status,
        scheduled_before=scheduled_before,
        scheduled_after=scheduled_after,
    )
    return paginate(db, stmt.order_by(Contact.id), limit=limit, offset=offset)


def filter_contacts(
    stmt: S,
    *,
    status: ContactStatus | None = None,
    scheduled_before: datetime | None = None,
    scheduled_after: datetime | None = None,
) -> S:
    """The contact list's filters (also the render's and the send sheet's): a status, scheduled
    strictly before, scheduled at or after."""
    if status is not None:
        stmt = stmt.where(Contact.status == status.value)
    if scheduled_before is not None:
        stmt = stmt.where(Contact.scheduled_at < scheduled_before)
    if scheduled_after is not None:
        stmt = stmt.where(Contact.scheduled_at >= scheduled_after)
    return stmt


def _with_sent_at(data: dict[str, Any]) -> dict[str, Any]:
    """A contact marked sent without a time was sent now."""
    if data.get("status") == ContactStatus.sent and data.get("sent_at") is None:
        data["sent_at"] = utcnow()
    if "status" in data and data["status"] is not None:
        data["status"] = ContactStatus(data["status"]).value
    return data


def _with_emails(group: Group, emails: Sequence[str]) -> ColumnElement[bool]:
    """The group's contacts with these emails, by the unique (campaign_id, group_id, email): by
    group_id alone the database walks the group's (group_id, status) index, every contact of it
    for every chunk (the 10th 10,000-contact import into one group read 90,000 rows per chunk)."""
    return and_(Contact.campaign_id == group.campaign_id, Contact.group_id == group.id, Contact.email.in_(emails))


def _existing_emails(db: Session, group: Group, emails: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(emails), CHUNK):
        found.update(db.scalars(select(Contact.email).where(_with_emails(group, emails[start : start + CHUNK]))))
    return found


def _insert_contacts(
    db: Session, group: Group, rows: Sequence[ContactCreate], *, row_locs: bool
) -> list[dict[str, Any]]:
    """Insert all rows or none; the rows as inserted (the columns of each contact but its id).
    Conflicts name each offending row (`["body", i, "email"]`)."""
    emails = [row.email for row in rows]
    errors: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    for index, email in enumerate(emails):
        if email in first_seen:
            errors.append(
                {
                    "loc": ["body", index, "email"],
                    "msg": f"Duplicate of row {first_seen[email]} in this request.",
                    "type": "conflict",
                }
            )
        else:
            first_seen[email] = index
    existing = _existing_emails(db, group, list(first_seen))
    for email in existing:
        loc: list[str | int] = ["body", first_seen[email], "email"] if row_locs else ["body", "email"]
        errors.append(
            {"loc": loc, "msg": "A contact with this email already exists in this group.", "type": "conflict"}
        )
    if errors:
        errors.sort(key=lambda e: e["loc"][1] if isinstance(e["loc"][1], int) else 0)
        raise Conflict(errors[:MAX_REPORTED_ERRORS])
    now = utcnow()
    # Contacts sent without a consent level take their campaign's (docs/consent.md).
    default = db.scalar(select(Campaign.tracking_default).where(Campaign.id == group.campaign_id)) or FULL
    values = [
        _with_sent_at(
            {
                **row.model_dump(include=_CREATED_FIELDS),
                "tracking": Tracking(row.tracking or default).value,
                "campaign_id": group.campaign_id,
                "group_id": group.id,
                "created_at": now,
                "updated_at": now,
            }
        )
        for row in rows
    ]
    # One INSERT per chunk (multi-row VALUES); the report counters' owner counts each chunk's
    # new contacts set-based (app/services/counters/session.py).
    for _, rows_chunk in cooperative.chunks(values, INSERT_CHUNK):
        db.execute(insert(Contact), rows_chunk)
    return values


def create_contacts(db: Session, group: Group, rows: Sequence[ContactCreate], *, row_locs: bool) -> list[Contact]:
    """Insert all rows or none, as contacts of the session (one, the sample loader).
    Conflicts name each offending row (`["body", i, "email"]`)."""
    emails = [row["email"] for row in _insert_contacts(db, group, rows, row_locs=row_locs)]
    by_email: dict[str, Contact] = {}
    for _, chunk in cooperative.chunks(emails):
        for contact in db.scalars(select(Contact).where(_with_emails(group, chunk))):
            by_email[contact.email] = contact
    return [by_email[email] for email in emails]


def import_contacts(db: Session, group: Group, rows: Sequence[ContactCreate]) -> list[dict[str, Any]]:
    """The bulk import: insert all rows or none (as `create_contacts`); each contact's columns as
    stored, in the order sent. Only the ids are read back (by the unique (group, email)): the
    other columns are the values inserted, which the database stores as given (microsecond UTC
    times, strings exactly; tests/test_contacts_import_fast.py compares with a read-back), so 10,000
    contacts are not read back and turned into objects."""
    values = _insert_contacts(db, group, rows, row_locs=True)
    ids: dict[str, int] = {}
    emails = [row["email"] for row in values]
    for _, chunk in cooperative.chunks(emails, INSERT_CHUNK):
        query = select(Contact.email, Contact.id).where(_with_emails(group, chunk))
        ids.update((email, contact_id) for email, contact_id in db.execute(query))
    for row in values:
        row["id"] = ids[row["email"]]
    return values


def update_contact(db: Session, contact: Contact, patch: ContactUpdate) -> Contact:
    changes = patch.changes()
    group_id = changes.get("group_id", contact.group_id)
    if group_id != contact.group_id:
        same_campaign = db.scalar(
            select(Group.id).where(Group.id == group_id, Group.campaign_id == contact.campaign_id)
        )
        if same_campaign is None:
            raise ValidationFailed(
                [
                    {
                        "loc": ["body", "group_id"],
                        "msg": "The group must belong to the contact's campaign.",
                        "type": "value_error",
                    }
                ]
            )
    email = changes.get("email", contact.email)
    if (email, group_id) != (contact.email, contact.group_id):
        same = (Contact.campaign_id == contact.campaign_id) & (Contact.group_id == group_id)  # (the unique key)
        taken = db.scalar(select(Contact.id).where(same, Contact.email == email))
        if taken is not None:
            raise conflict(["body", "email"], "A contact with this email already exists in this group.")
    # The resulting contact, not only the request, decides: a sent contact always has a sent_at.
    status = changes.get("status", contact.status)
    if status == ContactStatus.sent and changes.get("sent_at", contact.sent_at) is None:
        changes["sent_at"] = utcnow()
    before = contact.tracking
    if "tracking" in changes:
        changes["tracking"] = Tracking(changes["tracking"]).value
    apply_changes(contact, _with_sent_at(changes))
    db.flush()
    if consent.withdraws(before, contact.tracking):
        consent.erase_identifying(db, [contact.id])
    return contact


def delete_contact(db: Session, contact: Contact) -> None:
    db.delete(contact)  # pixels, openings, clicks, contact_stats: ON DELETE CASCADE
    db.flush()
