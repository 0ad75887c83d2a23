from __future__ import annotations

from typing import Annotated, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from app.models import ContactStatus, Tracking
from app.models.base import MAX_ID
from app.schemas.common import JSON_INT, Id, InModel, OutModel, PatchModel, UtcDatetime
from app.schemas.email import FastEmailStr

MAX_BULK_CONTACTS = 10_000


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


class ContactCreate(InModel):
    email: Annotated[FastEmailStr, Field(max_length=254, examples=["ana@example.com"])]
    name: Annotated[str, Field(max_length=200, examples=["Ana"])] | None = None
    scheduled_at: UtcDatetime | None = None
    status: ContactStatus = ContactStatus.scheduled
    sent_at: UtcDatetime | None = None
    tracking: Tracking | None = Field(
        default=None,
        description="Tracking consent (docs/consent.md): `full`, `anonymous` or `off`; "
        "default: the campaign's `tracking_default`.",
    )

    _email_lower = field_validator("email")(_lower)


class ContactUpdate(PatchModel):
    required_if_sent = frozenset({"email", "group_id", "status", "tracking"})

    email: Annotated[FastEmailStr, Field(max_length=254)] | None = None
    name: Annotated[str, Field(max_length=200)] | None = None
    group_id: Annotated[int, Field(ge=1, le=MAX_ID), JSON_INT] | None = Field(
        default=None, description="Move the contact to another group of the same campaign."
    )
    scheduled_at: UtcDatetime | None = None
    status: ContactStatus | None = None
    sent_at: UtcDatetime | None = None
    tracking: Tracking | None = Field(
        default=None,
        description="Tracking consent (docs/consent.md). From `full` to `anonymous` or `off` erases the IP "
        "addresses and user agents already stored for the contact's openings and clicks.",
    )

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
    tracking: Tracking
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ContactBulkOut(OutModel):
    items: list[ContactOut]
    total: int


class ContactBatchUpdate(InModel):
    """`PATCH /groups/{group_id}/contacts`: the same change for up to 10,000 contacts of the group."""

    # At least one change (the validator below): published, so that clients and fuzzers know it.
    model_config = ConfigDict(
        **InModel.model_config,
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("status", "sent_at", "tracking")
            ]
        },
    )

    ids: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_ID), JSON_INT]],
        Field(
            min_length=1,
            max_length=MAX_BULK_CONTACTS,
            description="Contact ids of this group (repeats are fine); any other id rejects the whole request (404).",
            examples=[[101, 102, 103]],
        ),
    ]
    status: ContactStatus | None = Field(default=None, description="Required unless `sent_at` or `tracking` is sent.")
    sent_at: UtcDatetime | None = Field(
        default=None,
        description="Default with `status: sent`: the contact's own `sent_at`, else now (as a single PATCH does).",
    )
    tracking: Tracking | None = Field(
        default=None,
        description="Tracking consent (docs/consent.md); from `full` to `anonymous`/`off` erases stored IPs and "
        "user agents.",
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if self.status is None and self.sent_at is None and self.tracking is None:
            raise ValueError("Send status, sent_at or tracking.")
        return self


class ContactBatchUpdated(OutModel):
    updated: int = Field(description="The number of distinct contacts updated (all of the ids sent).")
