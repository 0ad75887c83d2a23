from __future__ import annotations

from fastapi import Request, Response

from app.deps import CurrentUser, IdPath, PageDep, ReadSessionDep, SessionDep, owned_reads
from app.routing import PrefixRouter, TransactionRoute, model_response
from app.schemas.campaign import GroupCreate, GroupOut, GroupUpdate
from app.schemas.common import Page, error_responses, page_of
from app.services import campaigns

router = PrefixRouter(
    prefix="/api/v1", tags=["groups"], responses=error_responses(401, 403, 404, 422, 429), route_class=TransactionRoute
)


@router.get("/campaigns/{campaign_id}/groups", response_model=Page[GroupOut])
def list_groups(campaign_id: IdPath, user: CurrentUser, db: ReadSessionDep, page: PageDep) -> Page[GroupOut]:
    campaign = campaigns.get_campaign(db, user, campaign_id)
    items, total = campaigns.list_groups(db, campaign, limit=page.limit, offset=page.offset)
    return page_of(GroupOut, items, total, limit=page.limit, offset=page.offset)


@router.post(
    "/campaigns/{campaign_id}/groups", response_model=GroupOut, status_code=201, responses=error_responses(409)
)
def create_group(campaign_id: IdPath, body: GroupCreate, user: CurrentUser, db: SessionDep) -> GroupOut:
    """Add a group (one arm of an A/B test); names are unique within the campaign."""
    campaign = campaigns.get_campaign(db, user, campaign_id)
    return GroupOut.model_validate(campaigns.create_group(db, campaign, body))


@router.get("/groups/{group_id}", response_model=GroupOut)
async def get_group(group_id: IdPath, user: CurrentUser, request: Request) -> Response:
    return model_response(GroupOut.model_validate(await campaigns.read_group(owned_reads(request), user, group_id)))


@router.patch("/groups/{group_id}", response_model=GroupOut, responses=error_responses(409))
def update_group(group_id: IdPath, body: GroupUpdate, user: CurrentUser, db: SessionDep) -> GroupOut:
    group = campaigns.get_group(db, user, group_id)
    return GroupOut.model_validate(campaigns.update_group(db, group, body))


@router.delete("/groups/{group_id}", status_code=204)
def delete_group(group_id: IdPath, user: CurrentUser, db: SessionDep) -> Response:
    campaigns.delete_group(db, campaigns.get_group(db, user, group_id))
    return Response(status_code=204)
