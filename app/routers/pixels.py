from __future__ import annotations

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError

from app.deps import CurrentUser, IdPath, PageDep, ReadSessionDep, SessionDep, UrlsDep
from app.models import Pixel
from app.routing import PrefixRouter, TransactionRoute
from app.schemas.common import Page, error_responses
from app.schemas.tracking import PixelCreate, PixelOut, PixelUpdate
from app.services import contacts, pixels
from app.tracking.urls import TrackingUrls

router = PrefixRouter(
    prefix="/api/v1", tags=["pixels"], responses=error_responses(401, 403, 404, 422, 429), route_class=TransactionRoute
)


def _out(pixel: Pixel, urls: TrackingUrls) -> PixelOut:
    url = urls.pixel(pixel.id)
    return PixelOut(
        id=pixel.id,
        uuid=pixel.uuid,
        contact_id=pixel.contact_id,
        number=pixel.number,
        created_at=pixel.created_at,
        url=url,
        html=urls.img_tag(url),
    )


@router.get("/contacts/{contact_id}/pixels", response_model=Page[PixelOut])
def list_pixels(
    contact_id: IdPath, user: CurrentUser, db: ReadSessionDep, urls: UrlsDep, page: PageDep
) -> Page[PixelOut]:
    contact = contacts.get_contact(db, user, contact_id)
    items, total = pixels.list_pixels(db, contact, limit=page.limit, offset=page.offset)
    return Page[PixelOut](items=[_out(p, urls) for p in items], total=total, limit=page.limit, offset=page.offset)


async def _not_null(request: Request) -> None:
    """The body is optional (documented as a plain PixelCreate, not nullable): a JSON `null` is a 422."""
    if (await request.body()).strip() == b"null":
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "Send a JSON object, or no body at all.", "type": "model_attributes_type"}]
        )


@router.post(
    "/contacts/{contact_id}/pixels",
    response_model=PixelOut,
    status_code=201,
    responses=error_responses(409),
    dependencies=[Depends(_not_null)],
)
def create_pixel(
    contact_id: IdPath, user: CurrentUser, db: SessionDep, urls: UrlsDep, body: PixelCreate | None = None
) -> PixelOut:
    """Create a tracking pixel for the contact; embed its `html` (or `url`) in the email."""
    contact = contacts.get_contact(db, user, contact_id)
    pixel = pixels.create_pixel(db, contact, body.number if body else None)
    return _out(pixel, urls)


@router.get("/pixels/{pixel_id}", response_model=PixelOut)
def get_pixel(pixel_id: IdPath, user: CurrentUser, db: SessionDep, urls: UrlsDep) -> PixelOut:
    return _out(pixels.get_pixel(db, user, pixel_id), urls)


@router.patch("/pixels/{pixel_id}", response_model=PixelOut, responses=error_responses(409))
def update_pixel(pixel_id: IdPath, body: PixelUpdate, user: CurrentUser, db: SessionDep, urls: UrlsDep) -> PixelOut:
    pixel = pixels.update_pixel(db, pixels.get_pixel(db, user, pixel_id), body.number)
    return _out(pixel, urls)


@router.delete("/pixels/{pixel_id}", status_code=204)
def delete_pixel(pixel_id: IdPath, user: CurrentUser, db: SessionDep) -> Response:
    pixels.delete_pixel(db, pixels.get_pixel(db, user, pixel_id))
    return Response(status_code=204)
