from __future__ import annotations

from fastapi import Request, Response

from app.deps import CurrentUser, IdPath, PageDep, ReadSessionDep, SessionDep, owned_reads
from app.routing import PrefixRouter, TransactionRoute, model_response
from app.schemas.campaign import CampaignCreate, CampaignOut, CampaignUpdate
from app.schemas.common import Page, error_responses, page_of
from app.services import campaigns

router = PrefixRouter(
    prefix="/api/v1", tags=["campaigns"], responses=error_responses(401, 403, 422, 429), route_class=TransactionRoute
)


@router.get("/campaigns", response_model=Page[CampaignOut])
def list_campaigns(user: CurrentUser, db: ReadSessionDep, page: PageDep) -> Page[CampaignOut]:
    """Your campaigns (an admin sees everyone's)."""
    items, total = campaigns.list_campaigns(db, user, limit=page.limit, offset=page.offset)
    return page_of(CampaignOut, items, total, limit=page.limit, offset=page.offset)


@router.post("/campaigns", response_model=CampaignOut, status_code=201)
def create_campaign(body: CampaignCreate, user: CurrentUser, db: SessionDep) -> CampaignOut:
    return CampaignOut.model_validate(campaigns.create_campaign(db, user, body))


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut, responses=error_responses(404))
async def get_campaign(campaign_id: IdPath, user: CurrentUser, request: Request) -> Response:
    return model_response(
        CampaignOut.model_validate(await campaigns.read_campaign(owned_reads(request), user, campaign_id))
    )


@router.patch("/campaigns/{campaign_id}", response_model=CampaignOut, responses=error_responses(404))
def update_campaign(campaign_id: IdPath, body: CampaignUpdate, user: CurrentUser, db: SessionDep) -> CampaignOut:
    campaign = campaigns.get_campaign(db, user, campaign_id)
    return CampaignOut.model_validate(campaigns.update_campaign(db, campaign, body))


@router.delete("/campaigns/{campaign_id}", status_code=204, responses=error_responses(404))
def delete_campaign(campaign_id: IdPath, user: CurrentUser, db: SessionDep) -> Response:
    """Delete the campaign with its groups, contacts, pixels, openings, links and clicks."""
    campaigns.delete_campaign(db, campaigns.get_campaign(db, user, campaign_id))
    return Response(status_code=204)
