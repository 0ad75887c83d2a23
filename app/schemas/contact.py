from __future__ import annotations

from typing import Annotated

from pydantic import EmailStr, Field, field_validator

from app.models import ContactStatus
from app.models.base import MAX_ID
from app.schemas.common import JSON_INT, Id, InModel, OutModel, PatchModel, UtcDatetime

MAX_BULK_CONTACTS = 10_000


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


class ContactCreate(InModel):
    email: Annotated[EmailStr, Field(max_length=254, examples=["ana@example.com"])]
    name: Annotated[str, Field(max_length=200, examples=["Ana"])] | None = None
    scheduled_at: UtcDatetime | None = None
    status: ContactStatus = ContactStatus.scheduled
    sent_at: UtcDatetime | None = None

    _email_lower = field_validator("email")(_lower)


class ContactUpdate(PatchModel):
    required_if_sent = frozenset({"email", "group_id", "status"})

    email: Annotated[EmailStr, Field(max_length=254)] | None = None
    name: Annotated[str, Field(max_length=200)] | None = None
    group_id: Annotated[int, Field(ge=1, le=MAX_ID), JSON_INT] | None = Field(
        default=None, description="Move the contact to another group of the same campaign."
    )
    scheduled_at: UtcDatetime | None = None
    status: ContactStatus | None = None
    sent_at: UtcDatetime | None = None

    _email_lower = field_validator("email")(_lower)


class ContactOut(OutModel):
    id: Id
    campaign_id: Id
    group_id: Id
    email: str
    name: str | None
    scheduled_at: UtcDatetime | None
    status: ContactStatus
    sent_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ContactBulkOut(OutModel):
    items: list[ContactOut]
    total: int
