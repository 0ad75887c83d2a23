"""Send time: the render (tracked HTML per contact) and the send sheet (URLs per contact)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Query, Request

from app.deps import CurrentUser, IdPath, SessionDep, UrlsDep
from app.models import ContactStatus
from app.routing import PrefixRouter, TransactionRoute
from app.schemas.common import Id, UtcDatetime, error_responses
from app.schemas.render import MAX_JSON_CONTACTS, RenderedList, RenderRequest, SheetFormat
from app.services import campaigns, render, sendprep, sendsheet
from app.streaming import PrimedStreamingResponse

router = PrefixRouter(
    prefix="/api/v1", tags=["sending"], responses=error_responses(401, 403, 404, 422, 429), route_class=TransactionRoute
)

NDJSON = "application/x-ndjson"
_LINE = (
    '{"contact_id":7,"email":"ana@example.com","name":"Ana","html":"<html><body><a href=\\"https://track.example.com'
    '/c/gAAAAAB...\\">Shop</a><img src=\\"https://track.example.com/o/gAAAAAB....gif\\" width=\\"1\\" height=\\"1\\" '
    'alt=\\"\\" style=\\"display:block;width:1px;height:1px;border:0\\" /></body></html>","text":null,'
    '"pixel_url":"https://track.example.com/o/gAAAAAB....gif"}\n'
)
_RENDER_200: dict[int | str, dict[str, Any]] = {
    200: {
        "model": RenderedList,
        "description": "One JSON object per line (`application/x-ndjson`, the default), one per contact in "
        f'contact-id order; `{{"items": [...]}}` with `Accept: application/json` (at most {MAX_JSON_CONTACTS} '
        "contacts, else 422). Each line ends with a newline: a last line without one was cut off.",
        "content": {NDJSON: {"schema": {"type": "string"}, "example": _LINE}},
    }
}


def _wants_json(accept: str | None) -> bool:
    types = {part.split(";")[0].strip().lower() for part in (accept or "").split(",")}
    return "application/json" in types and NDJSON not in types


@router.post("/campaigns/{campaign_id}/render", response_class=PrimedStreamingResponse, responses=_RENDER_200)
def render_campaign(
    campaign_id: IdPath,
    body: RenderRequest,
    user: CurrentUser,
    db: SessionDep,
    urls: UrlsDep,
    request: Request,
    accept: Annotated[
        str | None, Header(description=f"`application/json`: one JSON document (≤ {MAX_JSON_CONTACTS} contacts).")
    ] = None,
) -> PrimedStreamingResponse:
    """The campaign's HTML (and text) for each selected contact, its links tracked and its pixel inserted.

    Selects the campaign's contacts, or a group's (`group_id`), or a list (`contact_ids`),
    filtered as the contact list is (`status`, `scheduled_before`, `scheduled_after`), after
    `after_contact_id` to resume a broken stream. Creates what is missing a chunk of contacts at
    a time, committed before that chunk is streamed: pixel number 1 for contacts without a
    pixel, one link per distinct destination URL (existing links with the same URL reused), the
    campaign's trap link. Everything but the inserted pixel, trap link and rewritten hrefs is
    byte-for-byte the input. Contacts with tracking `off` get the input as sent.
    """
    campaign = campaigns.get_campaign(db, user, campaign_id)
    as_json = _wants_json(accept)
    plan = render.plan(db, campaign, body, urls, as_json=as_json)
    factory = request.app.state.session_factory
    if as_json:
        return PrimedStreamingResponse(render.render_json(factory, plan), media_type="application/json")
    return PrimedStreamingResponse(
        render.render_lines(factory, plan), media_type=NDJSON, headers={"Cache-Control": "no-store"}
    )


_SHEET_200: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Streamed, one row per contact in contact-id order: "
        + ", ".join(sendsheet.COLUMNS)
        + ", then `link_<id>` per campaign link (the contact's tracked URL). CSV (UTF-8, RFC 4180, CRLF, header "
        "row first; cells starting with =, +, -, @, tab or CR prefixed with a quote) or NDJSON. Pixel and link "
        "cells are empty for contacts with tracking `off`.",
        "content": {
            "text/csv": {"schema": {"type": "string"}, "example": ",".join(sendsheet.COLUMNS) + ",link_3\r\n"},
            NDJSON: {"schema": {"type": "string"}},
        },
    }
}


@router.get("/campaigns/{campaign_id}/sendsheet", response_class=PrimedStreamingResponse, responses=_SHEET_200)
def send_sheet(
    campaign_id: IdPath,
    user: CurrentUser,
    db: SessionDep,
    urls: UrlsDep,
    request: Request,
    group_id: Annotated[Id | None, Query(description="Only this group's contacts.")] = None,
    status: Annotated[ContactStatus | None, Query()] = None,
    scheduled_before: Annotated[
        UtcDatetime | None, Query(description="Only contacts scheduled strictly before.")
    ] = None,
    scheduled_after: Annotated[UtcDatetime | None, Query(description="Only contacts scheduled at or after.")] = None,
    after_contact_id: Annotated[Id | None, Query(description="Resume: only contacts with a higher id.")] = None,
    fmt: Annotated[SheetFormat, Query(alias="format")] = SheetFormat.csv,
) -> PrimedStreamingResponse:
    """Each selected contact's pixel and tracked link URLs (creates missing pixels as the render does)."""
    campaign = campaigns.get_campaign(db, user, campaign_id)
    selection = sendprep.select_contacts(
        db,
        campaign,
        group_id=group_id,
        status=status,
        scheduled_before=scheduled_before,
        scheduled_after=scheduled_after,
        after_contact_id=after_contact_id,
    )
    link_ids = sendsheet.sheet_links(db, campaign)
    rows = sendsheet.sheet(request.app.state.session_factory, selection, link_ids, urls, fmt)
    if fmt is SheetFormat.csv:
        headers = {"Content-Disposition": f'attachment; filename="campaign-{campaign.id}-sendsheet.csv"'}
        return PrimedStreamingResponse(rows, media_type="text/csv; charset=utf-8", headers=headers)
    return PrimedStreamingResponse(rows, media_type=NDJSON, headers={"Cache-Control": "no-store"})
