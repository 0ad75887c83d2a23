"""Campaign reports: the stats of a campaign and of each of its groups (A/B arms)."""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models import ClientKind
from app.schemas.common import Id, UtcDatetime


class Bucket(enum.StrEnum):
    hour = "hour"
    day = "day"


BUCKET_SECONDS = {Bucket.hour: 3600, Bucket.day: 86400}

# Examples: the report of the first campaign of sample.json (`pixeltrack load-sample`).
_BY_CLIENT_EXAMPLE: dict[str, Any] = {
    "apple_mpp": 5,
    "gmail_proxy": 0,
    "outlook_proxy": 0,
    "yahoo_proxy": 0,
    "other_proxy": 0,
    "scanner": 0,
    "bot": 0,
    "browser": 15,
    "unknown": 0,
}


class StatsFields(BaseModel):
    """The counters and rates, for the whole campaign and for each group."""

    contacts_scheduled: int = Field(description="All contacts (whatever their status).")
    contacts_sent: int = Field(description="Contacts with status `sent`.")
    pixels: int = Field(description="Pixels of these contacts.")
    total_opens: int = Field(description="Openings recorded (machine opens included).")
    unique_opens: int = Field(description="Contacts with at least one opening.")
    open_rate: float = Field(
        description="unique_opens / contacts_sent, or / contacts_scheduled when no contact of the campaign is "
        "marked sent (see open_rate_basis); 0 when the denominator is 0. Rounded to 4 decimals."
    )
    open_rate_basis: Literal["sent", "scheduled"] = Field(
        description="Denominator of the rates, chosen once per campaign so that the groups compare."
    )
    clicks: int = Field(description="Clicks recorded.")
    unique_clicks: int = Field(description="Contacts with at least one click.")
    click_through_rate: float = Field(description="unique_clicks / the same denominator as open_rate.")
    click_to_open_rate: float = Field(description="unique_clicks / unique_opens (0 when nobody opened).")
    human_opens: int = Field(description="Openings by a `browser` or an `unknown` client.")
    machine_opens: int = Field(
        description="Openings by apple_mpp, gmail_proxy, outlook_proxy, yahoo_proxy, other_proxy, scanner or bot "
        "(prefetches, proxies, scanners)."
    )
    opens_by_client: dict[ClientKind, int] = Field(
        description="Openings per client kind; every kind is present (0 when none).",
        examples=[_BY_CLIENT_EXAMPLE],
    )
    median_seconds_to_first_open: float | None = Field(
        description="Median over the opened contacts of (first opening - sent_at, or scheduled_at when sent_at is "
        "null); contacts with neither are left out, negative delays count as 0. Null without data."
    )


class _GroupKey(BaseModel):
    group_id: Id
    name: str


class GroupStats(StatsFields, _GroupKey):  # fields of the last base come first: group_id, name, ...
    pass


class SeriesPoint(BaseModel):
    bucket_start: UtcDatetime = Field(description="Start of the hour/day (UTC).")
    opens: int = Field(description="Openings recorded in this bucket.")
    first_opens: int = Field(
        description="Contacts whose first opening falls in this bucket (over all buckets they add up to "
        "unique_opens): the growth of the open rate."
    )
    clicks: int = Field(description="Clicks recorded in this bucket.")


_GROUP_EXAMPLE: dict[str, Any] = {
    "group_id": 1,
    "name": "A - discount in subject",
    "contacts_scheduled": 14,
    "contacts_sent": 14,
    "pixels": 14,
    "total_opens": 16,
    "unique_opens": 8,
    "open_rate": 0.5714,
    "open_rate_basis": "sent",
    "clicks": 0,
    "unique_clicks": 0,
    "click_through_rate": 0.0,
    "click_to_open_rate": 0.0,
    "human_opens": 14,
    "machine_opens": 2,
    "opens_by_client": {**_BY_CLIENT_EXAMPLE, "apple_mpp": 2, "browser": 14},
    "median_seconds_to_first_open": 34971.5,
}


class _CampaignKey(BaseModel):
    campaign_id: Id


class CampaignStats(StatsFields, _CampaignKey):
    """A campaign's report; `series` only when `bucket` is given."""

    groups: list[GroupStats] = Field(description="Every group of the campaign (also those without contacts or opens).")
    winner: int | None = Field(
        description="group_id with the highest open_rate; null when no group has an opening; "
        "a tie goes to the lowest group_id."
    )
    series: list[SeriesPoint] | None = Field(
        default=None,
        description="With ?bucket=hour|day: every bucket from `from` to `to`, zero-filled.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "campaign_id": 1,
                "contacts_scheduled": 28,
                "contacts_sent": 28,
                "pixels": 28,
                "total_opens": 20,
                "unique_opens": 10,
                "open_rate": 0.3571,
                "open_rate_basis": "sent",
                "clicks": 0,
                "unique_clicks": 0,
                "click_through_rate": 0.0,
                "click_to_open_rate": 0.0,
                "human_opens": 15,
                "machine_opens": 5,
                "opens_by_client": _BY_CLIENT_EXAMPLE,
                "median_seconds_to_first_open": 40415.0,
                "groups": [
                    _GROUP_EXAMPLE,
                    {
                        **_GROUP_EXAMPLE,
                        "group_id": 2,
                        "name": "B - question in subject",
                        "total_opens": 4,
                        "unique_opens": 2,
                        "open_rate": 0.1429,
                        "human_opens": 1,
                        "machine_opens": 3,
                        "opens_by_client": {**_BY_CLIENT_EXAMPLE, "apple_mpp": 3, "browser": 1},
                        "median_seconds_to_first_open": 79579.0,
                    },
                ],
                "winner": 1,
                "series": [
                    {"bucket_start": "2026-03-02T00:00:00+00:00", "opens": 10, "first_opens": 6, "clicks": 0},
                    {"bucket_start": "2026-03-03T00:00:00+00:00", "opens": 10, "first_opens": 4, "clicks": 0},
                ],
            }
        }
    )
