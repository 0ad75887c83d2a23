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


class ABMetric(enum.StrEnum):
    """The rate an A/B winner is decided on."""

    opens = "opens"  # human_open_rate
    clicks = "clicks"  # human_click_through_rate
    conversions = "conversions"  # conversion_rate


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
    human_opens: int = Field(description="Openings by a `browser` client (a person's mail client or browser).")
    machine_opens: int = Field(
        description="Openings by apple_mpp, gmail_proxy, outlook_proxy, yahoo_proxy, other_proxy, scanner or bot "
        "(prefetches, proxies, scanners)."
    )
    unknown_opens: int = Field(
        description="Openings by a client that could not be classed (`unknown`): in neither human_opens nor "
        "machine_opens. total_opens = human_opens + machine_opens + unknown_opens."
    )
    opens_by_client: dict[ClientKind, int] = Field(
        description="Openings per client kind; every kind is present (0 when none).",
        examples=[_BY_CLIENT_EXAMPLE],
    )
    human_unique_opens: int = Field(
        description="Contacts who opened as a person: a `browser` opening, or a human click (a click implies an "
        "open: images off). Includes inferred_opens."
    )
    inferred_opens: int = Field(
        description="Contacts with a human click and no `browser` opening: counted in human_unique_opens."
    )
    human_open_rate: float = Field(description="human_unique_opens / the same denominator as open_rate.")
    human_clicks: int = Field(description="Clicks by a `browser` client.")
    scanner_clicks: int = Field(
        description="Clicks by a machine: link scanners and security gateways, bots, mail proxies (every class but "
        "browser and unknown). clicks = human_clicks + scanner_clicks + clicks by an `unknown` client."
    )
    human_unique_clicks: int = Field(description="Contacts with at least one human click.")
    human_click_through_rate: float = Field(description="human_unique_clicks / the same denominator as open_rate.")
    median_seconds_to_first_open: float | None = Field(
        description="Median over the opened contacts of (first opening - sent_at, or scheduled_at when sent_at is "
        "null); contacts with neither are left out, negative delays count as 0. Null without data."
    )
    conversions: int = Field(
        description="Conversions recorded (docs/conversions.md): every stored one, anonymous contacts' included "
        "(an order id counts once per contact)."
    )
    unique_converters: int = Field(
        description="Contacts with at least one conversion. Anonymous contacts' conversions name no one: they "
        "count in conversions and revenue, not here."
    )
    anonymous_conversions: int = Field(description="Conversions of `anonymous` contacts (in conversions, revenue).")
    conversion_rate: float = Field(description="unique_converters / the same denominator as open_rate.")
    conversion_rate_of_human_clickers: float = Field(
        description="Human clickers who converted / human_unique_clicks (0 when nobody clicked as a person)."
    )
    revenue: dict[str, str] = Field(
        description="Sum of the conversions' values per ISO 4217 currency, as decimal strings with 4 decimals "
        "(never floats); currencies without a conversion are absent.",
        examples=[{"EUR": "42.5000"}],
    )
    value_per_contact: dict[str, str] = Field(
        description="revenue / the same denominator as open_rate, per currency, 4 decimals (rounded half up; "
        '"0.0000" when the denominator is 0).',
        examples=[{"EUR": "1.5179"}],
    )


class _GroupKey(BaseModel):
    group_id: Id
    name: str


class ABComparison(BaseModel):
    """One group against the control on one rate (app/services/abtest.py; docs/api.md#ab-confidence)."""

    difference: float | None = Field(
        description="Group rate - control rate, in rate points (0.02: 2 points better); null when either group "
        "has no contacts. Rounded to 4 decimals."
    )
    ci_low: float | None = Field(description="Lower end of the 95 % confidence interval of the difference (Newcombe).")
    ci_high: float | None = Field(description="Upper end of the 95 % confidence interval of the difference.")
    p_value: float = Field(
        description="Two-sided p-value of 'no difference' (1.0 when it cannot be tested). 4 significant digits."
    )
    p_adjusted: float = Field(
        description="p_value corrected by Holm across the groups compared with the control (= p_value with one)."
    )
    test: Literal["z", "fisher"] = Field(
        description="`z`: two-proportion z-test; `fisher`: Fisher's exact test, when an expected count is below 5."
    )


class GroupAB(BaseModel):
    opens: ABComparison = Field(description="On human_open_rate.")
    clicks: ABComparison = Field(description="On human_click_through_rate.")
    conversions: ABComparison = Field(description="On conversion_rate (unique_converters).")


class GroupStats(StatsFields, _GroupKey):  # fields of the last base come first: group_id, name, ...
    ab: GroupAB | None = Field(description="This group against the control group; null for the control itself.")


class SeriesPoint(BaseModel):
    bucket_start: UtcDatetime = Field(description="Start of the hour/day (UTC).")
    opens: int = Field(description="Openings recorded in this bucket.")
    first_opens: int = Field(
        description="Contacts whose first opening falls in this bucket (over all buckets they add up to "
        "unique_opens): the growth of the open rate."
    )
    clicks: int = Field(description="Clicks recorded in this bucket.")
    conversions: int = Field(description="Conversions that occurred in this bucket (their occurred_at).")


# (sample.json records no conversions: docs/conversions.md#reports has an example with some.)
_NO_CONVERSIONS_EXAMPLE: dict[str, Any] = {
    "conversions": 0,
    "unique_converters": 0,
    "anonymous_conversions": 0,
    "conversion_rate": 0.0,
    "conversion_rate_of_human_clickers": 0.0,
    "revenue": {},
    "value_per_contact": {},
}
_NOTHING_EITHER_WAY: dict[str, Any] = {
    "difference": 0.0,
    "ci_low": -0.2153,
    "ci_high": 0.2153,
    "p_value": 1.0,
    "p_adjusted": 1.0,
    "test": "fisher",
}
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
    "unknown_opens": 0,
    "opens_by_client": {**_BY_CLIENT_EXAMPLE, "apple_mpp": 2, "browser": 14},
    "human_unique_opens": 8,
    "inferred_opens": 0,
    "human_open_rate": 0.5714,
    "human_clicks": 0,
    "scanner_clicks": 0,
    "human_unique_clicks": 0,
    "human_click_through_rate": 0.0,
    "median_seconds_to_first_open": 34971.5,
    **_NO_CONVERSIONS_EXAMPLE,
    "ab": None,  # the control
}


class _CampaignKey(BaseModel):
    campaign_id: Id


class CampaignStats(StatsFields, _CampaignKey):
    """A campaign's report; `series` only when `bucket` is given."""

    groups: list[GroupStats] = Field(description="Every group of the campaign (also those without contacts or opens).")
    control_group_id: int | None = Field(
        description="The group the others are compared with (`ab`): ?control, else the campaign's first group "
        "(lowest id); null without groups."
    )
    winner_metric: ABMetric = Field(description="The rate `winner` is decided on (?metric).")
    winner: int | None = Field(
        description="The group that beats the control on winner_metric: significantly better (p_adjusted < 0.05), "
        "the best rate among such groups; null when none does, or while the control or the group has fewer than "
        "AB_MIN_SAMPLE contacts. Never the control."
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
                "unknown_opens": 0,
                "opens_by_client": _BY_CLIENT_EXAMPLE,
                "human_unique_opens": 9,
                "inferred_opens": 0,
                "human_open_rate": 0.3214,
                "human_clicks": 0,
                "scanner_clicks": 0,
                "human_unique_clicks": 0,
                "human_click_through_rate": 0.0,
                "median_seconds_to_first_open": 40415.0,
                **_NO_CONVERSIONS_EXAMPLE,
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
                        "human_unique_opens": 1,
                        "human_open_rate": 0.0714,
                        "median_seconds_to_first_open": 79579.0,
                        "ab": {
                            # 1 of 14 against 8 of 14: significantly worse (Fisher: small counts).
                            "opens": {
                                "difference": -0.5,
                                "ci_low": -0.7226,
                                "ci_high": -0.1544,
                                "p_value": 0.01275,
                                "p_adjusted": 0.01275,
                                "test": "fisher",
                            },
                            "clicks": _NOTHING_EITHER_WAY,
                            "conversions": _NOTHING_EITHER_WAY,
                        },
                    },
                ],
                "control_group_id": 1,
                "winner_metric": "opens",
                "winner": None,  # B is worse than the control A, and 14 contacts are below AB_MIN_SAMPLE
                "series": [
                    {
                        "bucket_start": "2026-03-02T00:00:00+00:00",
                        "opens": 10,
                        "first_opens": 6,
                        "clicks": 0,
                        "conversions": 0,
                    },
                    {
                        "bucket_start": "2026-03-03T00:00:00+00:00",
                        "opens": 10,
                        "first_opens": 4,
                        "clicks": 0,
                        "conversions": 0,
                    },
                ],
            }
        }
    )
