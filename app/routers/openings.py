from __future__ import annotations

from fastapi import Response

from app.deps import CurrentUser, IdPath, PageDep, ReadSessionDep, SessionDep
from app.routing import PrefixRouter, TransactionRoute
from app.schemas.common import Page, error_responses, page_of
from app.schemas.tracking import OpeningCreate, OpeningOut, OpeningUpdate
from app.services import openings, pixels

router = PrefixRouter(
    prefix="/api/v1",
    tags=["openings"],
    responses=error_responses(401, 403, 404, 422, 429),
    route_class=TransactionRoute,
)


@router.get("/pixels/{pixel_id}/openings", response_model=Page[OpeningOut])
def list_openings(pixel_id: IdPath, user: CurrentUser, db: ReadSessionDep, page: PageDep) -> Page[OpeningOut]:
    """The pixel's openings; none when its contact's tracking consent is not `full` (they are
    counted in the stats, never listed: docs/consent.md)."""
    pixel = pixels.get_pixel(db, user, pixel_id)
    items, total = openings.list_openings(db, pixel, limit=page.limit, offset=page.offset)
    return page_of(OpeningOut, items, total, limit=page.limit, offset=page.offset)


@router.post("/pixels/{pixel_id}/openings", response_model=OpeningOut, status_code=201, responses=error_responses(409))
def create_opening(pixel_id: IdPath, body: OpeningCreate, user: CurrentUser, db: SessionDep) -> OpeningOut:
    """Record an opening by hand (imports, corrections). `event_id` makes it idempotent.

    For a contact whose tracking is `off`: 409 `tracking_off`; `anonymous`: stored without the
    IP and user agent."""
    pixel = pixels.get_pixel(db, user, pixel_id)
    return OpeningOut.model_validate(openings.create_opening(db, pixel, body))


@router.get("/openings/{opening_id}", response_model=OpeningOut)
def get_opening(opening_id: IdPath, user: CurrentUser, db: SessionDep) -> OpeningOut:
    """One opening of a contact whose tracking consent is `full` (the others': 404)."""
    return OpeningOut.model_validate(openings.get_opening(db, user, opening_id))


@router.patch("/openings/{opening_id}", response_model=OpeningOut)
def update_opening(opening_id: IdPath, body: OpeningUpdate, user: CurrentUser, db: SessionDep) -> OpeningOut:
    opening = openings.get_opening(db, user, opening_id)
    return OpeningOut.model_validate(openings.update_opening(db, opening, body))


@router.delete("/openings/{opening_id}", status_code=204)
def delete_opening(opening_id: IdPath, user: CurrentUser, db: SessionDep) -> Response:
    openings.delete_opening(db, openings.get_opening(db, user, opening_id))
    return Response(status_code=204)
