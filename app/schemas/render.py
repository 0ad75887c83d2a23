"""Send-time rendering: the render request, its per-contact answer, and the send sheet's format."""

from __future__ import annotations

import enum
from typing import Annotated, Self

from pydantic import ConfigDict, Field, StrictBool, field_validator, model_validator

from app.models import ContactStatus
from app.models.base import MAX_ID
from app.schemas.common import JSON_INT, InModel, OutModel, UtcDatetime

MAX_TEMPLATE_BYTES = 2 * 1024 * 1024  # html and text, each, in UTF-8
MAX_RENDER_IDS = 10_000
MAX_JSON_CONTACTS = 1_000  # `Accept: application/json` answers at most this many contacts

BodyId = Annotated[int, Field(ge=1, le=MAX_ID), JSON_INT]
UtmValue = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


def _within_size(value: str | None) -> str | None:
    if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_TEMPLATE_BYTES:
        raise ValueError(f"at most {MAX_TEMPLATE_BYTES} bytes (2 MB) of UTF-8")
    return value


class Utm(InModel):
    """UTM parameters added to every tracked destination that does not carry them yet."""

    source: UtmValue | None = Field(default=None, examples=["newsletter"])
    medium: UtmValue | None = Field(default=None, examples=["email"])
    campaign: UtmValue | None = Field(default=None, examples=["spring-2026"])
    content: UtmValue | None = None
    term: UtmValue | None = None

    def values(self) -> dict[str, str]:
        """The parameters given, in the order utm_source, medium, campaign, content, term."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


class RenderRequest(InModel):
    # The templates are taken exactly as sent (no stripping): the answer is byte-for-byte them.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    html: str = Field(
        min_length=1,
        max_length=MAX_TEMPLATE_BYTES,
        description="The email's HTML (at most 2 MB of UTF-8). Returned per contact with its links tracked and "
        "its pixel inserted; everything else byte-for-byte as sent.",
        examples=['<html><body><p>Hi!</p><a href="https://shop.example.com/spring">Shop</a></body></html>'],
    )
    text: str | None = Field(
        default=None,
        max_length=MAX_TEMPLATE_BYTES,
        description="The plain-text part, if any: its bare http(s) URLs are tracked the same way.",
    )
    group_id: BodyId | None = Field(default=None, description="Render the contacts of this group of the campaign.")
    contact_ids: Annotated[list[BodyId], Field(min_length=1, max_length=MAX_RENDER_IDS)] | None = Field(
        default=None, description="Render these contacts of the campaign (at most 10,000); not with `group_id`."
    )
    status: ContactStatus | None = Field(default=None, description="Only contacts with this status.")
    scheduled_before: UtcDatetime | None = Field(default=None, description="Only contacts scheduled strictly before.")
    scheduled_after: UtcDatetime | None = Field(default=None, description="Only contacts scheduled at or after.")
    track_opens: StrictBool = Field(default=True, description="Insert the contact's pixel before `</body>`.")
    track_clicks: StrictBool = Field(default=True, description="Rewrite http(s) links to tracked click URLs.")
    utm: Utm | None = None
    trap_link: StrictBool = Field(
        default=False,
        description="Insert an invisible link before the pixel that only machines follow (its clicks are "
        "`scanner`, reason `trap:link`); for contacts with `full` tracking.",
    )
    after_contact_id: BodyId | None = Field(
        default=None, description="Resume a broken stream: only contacts with a higher id."
    )

    _size = field_validator("html", "text")(_within_size)

    @model_validator(mode="after")
    def _one_selection(self) -> Self:
        if self.group_id is not None and self.contact_ids is not None:
            raise ValueError("give group_id or contact_ids, not both")
        return self


class RenderedContact(OutModel):
    contact_id: int
    email: str
    name: str | None
    html: str = Field(description="This contact's HTML (the input as sent when the contact's tracking is `off`).")
    text: str | None = Field(description="This contact's text part (null when none was sent).")
    pixel_url: str | None = Field(description="The pixel inserted (null: tracking `off`, or `track_opens` false).")


class RenderedList(OutModel):
    items: list[RenderedContact]


class SheetFormat(enum.StrEnum):
    csv = "csv"
    ndjson = "ndjson"
