from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool

from app.models import Tracking
from app.schemas.common import Id, InModel, OutModel, PatchModel, UtcDatetime
from app.schemas.origins import Origins

Name = Annotated[str, Field(min_length=1, max_length=200, examples=["Spring sale"])]
Description = Annotated[str, Field(max_length=2000, examples=["Newsletter with the spring offers"])]
TrackingDefault = Annotated[
    Tracking,
    Field(description="The tracking consent (docs/consent.md) of contacts created without one: full, anonymous, off."),
]
AttributionDefault = Annotated[
    StrictBool,
    Field(
        description="Whether links created without `attribution` (by `POST .../links` or by the render) carry "
        "an attribution token: their click redirect appends `pt=<token>` (docs/conversions.md)."
    ),
]


class CampaignCreate(InModel):
    name: Name
    description: Description | None = None
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None
    tracking_default: TrackingDefault = Tracking.full
    attribution_default: AttributionDefault = False
    conversion_origins: Origins = Field(default_factory=list)


class CampaignUpdate(PatchModel):
    required_if_sent = frozenset({"name", "tracking_default", "attribution_default", "conversion_origins"})

    name: Name | None = None
    description: Description | None = None
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None
    tracking_default: TrackingDefault | None = None
    attribution_default: AttributionDefault | None = None
    conversion_origins: Origins | None = None


class CampaignOut(OutModel):
    id: Id
    owner_id: Id
    name: str
    description: str | None
    starts_at: UtcDatetime | None
    ends_at: UtcDatetime | None
    tracking_default: TrackingDefault
    attribution_default: AttributionDefault
    conversion_origins: list[str] = Field(description="The origins whose pages may post this campaign's conversions.")
    created_at: UtcDatetime
    updated_at: UtcDatetime


class GroupCreate(InModel):
    name: Annotated[str, Field(min_length=1, max_length=200, examples=["A"])]
    description: Description | None = None


class GroupUpdate(PatchModel):
    required_if_sent = frozenset({"name"})

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Description | None = None


class GroupOut(OutModel):
    id: Id
    campaign_id: Id
    name: str
    description: str | None
    created_at: UtcDatetime
