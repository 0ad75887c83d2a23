from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import StreamingResponse

from app.deps import CurrentUser, IdPath, ReadSessionDep, ReadTargetDep, SettingsDep
from app.routing import PrefixRouter, TransactionRoute
from app.schemas.common import Id, UtcDatetime, error_responses
from app.schemas.reports import ABMetric, Bucket, CampaignStats
from app.services import campaigns, export, stats

router = PrefixRouter(
    prefix="/api/v1", tags=["reports"], responses=error_responses(401, 403, 404, 422, 429), route_class=TransactionRoute
)


@router.get("/campaigns/{campaign_id}/stats", response_model=CampaignStats, response_model_exclude_unset=True)
def campaign_stats(
    campaign_id: IdPath,
    user: CurrentUser,
    db: ReadSessionDep,
    settings: SettingsDep,
    bucket: Annotated[
        Bucket | None,
        Query(description="Add `series`: opens, first opens, clicks and conversions per hour or per day (UTC)."),
    ] = None,
    start: Annotated[
        UtcDatetime | None,
        Query(
            alias="from",
            description="Series start, inclusive (rounded down to the bucket); only with `bucket`. Default: the "
            "bucket of the first opening, click or conversion.",
        ),
    ] = None,
    end: Annotated[
        UtcDatetime | None,
        Query(
            alias="to",
            description="Series end, exclusive; must be after `from`; only with `bucket`. Default: the end of the "
            "bucket of the last opening, click or conversion. At most 10,000 buckets from `from` to `to`.",
        ),
    ] = None,
    control: Annotated[
        Id | None,
        Query(
            description="The group the others are compared with (a group of this campaign, else 422). Default: "
            "the campaign's first group (lowest id)."
        ),
    ] = None,
    metric: Annotated[
        ABMetric,
        Query(
            description="The rate `winner` is decided on: `opens` (human_open_rate), `clicks` "
            "(human_click_through_rate) or `conversions` (conversion_rate)."
        ),
    ] = ABMetric.opens,
) -> CampaignStats:
    """Opens, clicks, conversions and rates of the campaign and of each group (A/B arm), each group
    against the control.

    Every opening and click is counted in the raw totals, and split by client: human (a `browser`
    client), machine (Apple Mail Privacy Protection, mail proxies, scanners, bots) and unknown.
    `human_unique_opens` also counts contacts known to have opened only by a human click. Rates
    are over the sent contacts, or over all contacts while none is marked sent (`open_rate_basis`).
    Conversions (docs/conversions.md#reports): counts, converters, rates, revenue and value per
    contact per currency (decimal strings). Each group's `ab` compares its human open and click
    rates and its conversion rate with the control's (difference, 95 % interval, p-value,
    Holm-adjusted across groups); `winner` is the group significantly better than the control on
    `metric`, null below AB_MIN_SAMPLE contacts per group (docs/api.md).
    """
    campaign = campaigns.get_campaign(db, user, campaign_id)
    return stats.campaign_stats(
        db,
        campaign,
        bucket=bucket,
        start=start,
        end=end,
        control=control,
        metric=metric,
        min_sample=settings.ab_min_sample,
    )


_CSV_DOC = (
    "Streamed CSV (UTF-8, RFC 4180 quoting, CRLF), header row first, rows in time order. Timestamps are "
    "ISO-8601 UTC (+00:00); empty cell = null. Text cells starting with =, +, -, @, tab or carriage return are "
    "prefixed with a single quote so that spreadsheets show them instead of running them as formulas."
)


def _primed(content: Iterator[bytes]) -> Iterator[bytes]:
    """Run the export's first query before the 200 is sent: a database failure there answers
    503 in the one error shape instead of a 200 cut short after its header row."""
    first = next(content, b"") + next(content, b"")
    return itertools.chain([first], content)


def _csv_response(content: Iterator[bytes], filename: str) -> StreamingResponse:
    return StreamingResponse(
        _primed(content),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _csv_doc(columns: tuple[str, ...]) -> dict[int | str, dict[str, Any]]:
    example = ",".join(columns) + "\r\n"
    return {200: {"description": _CSV_DOC, "content": {"text/csv": {"schema": {"type": "string"}, "example": example}}}}


@router.get(
    "/campaigns/{campaign_id}/openings.csv",
    response_class=StreamingResponse,
    responses=_csv_doc(export.OPENINGS_CSV_COLUMNS),
)
def openings_csv(
    campaign_id: IdPath, user: CurrentUser, db: ReadSessionDep, target: ReadTargetDep
) -> StreamingResponse:
    """Every opening of the campaign, with its contact, group and pixel (contacts whose tracking
    consent is `full`: the others' openings count in the stats only)."""
    campaign = campaigns.get_campaign(db, user, campaign_id)
    rows = export.export_openings_csv(target.factory, campaign.id)
    return _csv_response(rows, f"campaign-{campaign.id}-openings.csv")


@router.get(
    "/campaigns/{campaign_id}/clicks.csv",
    response_class=StreamingResponse,
    responses=_csv_doc(export.CLICKS_CSV_COLUMNS),
)
def clicks_csv(campaign_id: IdPath, user: CurrentUser, db: ReadSessionDep, target: ReadTargetDep) -> StreamingResponse:
    """Every click of the campaign, with its contact, group and link (contacts whose tracking
    consent is `full`: the others' clicks count in the stats only)."""
    campaign = campaigns.get_campaign(db, user, campaign_id)
    rows = export.export_clicks_csv(target.factory, campaign.id)
    return _csv_response(rows, f"campaign-{campaign.id}-clicks.csv")


@router.get(
    "/campaigns/{campaign_id}/conversions.csv",
    response_class=StreamingResponse,
    responses=_csv_doc(export.CONVERSIONS_CSV_COLUMNS),
)
def conversions_csv(
    campaign_id: IdPath, user: CurrentUser, db: ReadSessionDep, target: ReadTargetDep
) -> StreamingResponse:
    """Every conversion of the campaign, in occurred_at order, with its group, name, value (a
    decimal), currency, order id, source and link (docs/conversions.md#reports). contact_id and
    email only for contacts whose tracking consent is `full`: anonymous conversions name no one."""
    campaign = campaigns.get_campaign(db, user, campaign_id)
    rows = export.export_conversions_csv(target.factory, campaign.id)
    return _csv_response(rows, f"campaign-{campaign.id}-conversions.csv")
