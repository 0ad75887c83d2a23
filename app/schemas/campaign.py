from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import Field, model_validator

from app.schemas.common import Id, InModel, OutModel, PatchModel, UtcDatetime

Name = Annotated[str, Field(min_length=1, max_length=200, examples=["Spring sale"])]
Description = Annotated[str, Field(max_length=2000, examples=["Newsletter with the spring offers"])]


class CampaignCreate(InModel):
    name: Name
    description: Description | None = None
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        check_date_range(self.starts_at, self.ends_at)
        return self


class CampaignUpdate(PatchModel):
    required_if_sent = frozenset({"name"})

    name: Name | None = None
    description: Description | None = None
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None


class CampaignOut(OutModel):
    id: Id
    owner_id: Id
    name: str
    description: str | None
    starts_at: UtcDatetime | None
    ends_at: UtcDatetime | None
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


def check_date_range(starts_at: datetime | None, ends_at: datetime | None) -> None:
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
