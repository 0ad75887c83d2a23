from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Query, Request, Response

from app.deps import CurrentUser, IdPath, PageDep, ReadSessionDep, SessionDep, UrlsDep, owned_reads
from app.models.base import MAX_ID
from app.routing import PrefixRouter, TransactionRoute, after_commit, model_response
from app.schemas.common import Page, error_responses, page_of
from app.schemas.tracking import LinkCreate, LinkOut, LinkUpdate, TrackedUrlOut
from app.services import campaigns, links

router = PrefixRouter(
    prefix="/api/v1", tags=["links"], responses=error_responses(401, 403, 404, 422, 429), route_class=TransactionRoute
)


def _drop_cached_url(request: Request, link_id: int) -> None:
    """Once the change is committed, drop the cached URL: at once in this process and, with Redis,
    in every other API process (before the commit, another request could cache the old URL again);
    without Redis the other processes redirect to the old URL until their entry expires (LinkCache)."""
    changed: Callable[[int], Awaitable[None]] = request.app.state.tracker.links.changed
    after_commit(request, lambda: changed(link_id))


@router.get("/campaigns/{campaign_id}/links", response_model=Page[LinkOut])
def list_links(campaign_id: IdPath, user: CurrentUser, db: ReadSessionDep, page: PageDep) -> Page[LinkOut]:
    campaign = campaigns.get_campaign(db, user, campaign_id)
    items, total = links.list_links(db, campaign, limit=page.limit, offset=page.offset)
    return page_of(LinkOut, items, total, limit=page.limit, offset=page.offset)


@router.post("/campaigns/{campaign_id}/links", response_model=LinkOut, status_code=201)
def create_link(campaign_id: IdPath, body: LinkCreate, user: CurrentUser, db: SessionDep) -> LinkOut:
    """Register a destination URL (http/https) whose clicks are tracked per contact."""
    campaign = campaigns.get_campaign(db, user, campaign_id)
    return LinkOut.model_validate(links.create_link(db, campaign, body))


@router.get("/links/{link_id}", response_model=LinkOut)
async def get_link(link_id: IdPath, user: CurrentUser, request: Request) -> Response:
    return model_response(LinkOut.model_validate(await links.read_link(owned_reads(request), user, link_id)))


@router.patch("/links/{link_id}", response_model=LinkOut)
def update_link(link_id: IdPath, body: LinkUpdate, user: CurrentUser, db: SessionDep, request: Request) -> LinkOut:
    link = links.update_link(db, links.get_link(db, user, link_id), body)
    _drop_cached_url(request, link.id)
    return LinkOut.model_validate(link)


@router.delete("/links/{link_id}", status_code=204)
def delete_link(link_id: IdPath, user: CurrentUser, db: SessionDep, request: Request) -> Response:
    links.delete_link(db, links.get_link(db, user, link_id))
    _drop_cached_url(request, link_id)
    return Response(status_code=204)


@router.get("/links/{link_id}/url", response_model=TrackedUrlOut)
def tracked_url(
    link_id: IdPath,
    contact_id: Annotated[int, Query(ge=1, le=MAX_ID, description="A contact of the link's campaign.")],
    user: CurrentUser,
    db: SessionDep,
    urls: UrlsDep,
) -> TrackedUrlOut:
    """The tracked click URL of this link for one contact (put it in that contact's email)."""
    link = links.get_link(db, user, link_id)
    contact = links.contact_of_link_campaign(db, link, contact_id)
    return TrackedUrlOut(link_id=link.id, contact_id=contact.id, url=urls.click(link.id, contact.id))
