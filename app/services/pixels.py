"""Pixels of a contact (several per contact for multi-rendering) and their public URLs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from html import escape

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Campaign, Contact, Pixel, User
from app.services.common import conflict, owned, paginate


def get_pixel(db: Session, user: User, pixel_id: int) -> Pixel:
    stmt = (
        select(Pixel)
        .join(Contact, Contact.id == Pixel.contact_id)
        .join(Campaign, Campaign.id == Contact.campaign_id)
        .where(Pixel.id == pixel_id)
    )
    pixel = db.scalar(owned(stmt, user))
    if pixel is None:
        raise NotFound("Pixel not found.")
    return pixel


def list_pixels(db: Session, contact: Contact, *, limit: int, offset: int) -> tuple[Sequence[Pixel], int]:
    stmt = select(Pixel).where(Pixel.contact_id == contact.id).order_by(Pixel.number, Pixel.id)
    return paginate(db, stmt, limit=limit, offset=offset)


def _check_number_free(db: Session, contact_id: int, number: int) -> None:
    if db.scalar(select(Pixel.id).where(Pixel.contact_id == contact_id, Pixel.number == number)) is not None:
        raise conflict(["body", "number"], "This contact already has a pixel with this number.")


def create_pixel(db: Session, contact: Contact, number: int | None = None) -> Pixel:
    if number is None:
        number = (db.scalar(select(func.max(Pixel.number)).where(Pixel.contact_id == contact.id)) or 0) + 1
    else:
        _check_number_free(db, contact.id, number)
    pixel = Pixel(contact_id=contact.id, number=number, uuid=uuid.uuid4().hex)
    db.add(pixel)
    db.commit()
    return pixel


def update_pixel(db: Session, pixel: Pixel, number: int) -> Pixel:
    if number != pixel.number:
        _check_number_free(db, pixel.contact_id, number)
        pixel.number = number
        db.commit()
    return pixel


def delete_pixel(db: Session, pixel: Pixel) -> None:
    db.delete(pixel)  # openings: ON DELETE CASCADE
    db.commit()


def pixel_url(base_url: str, pixel: Pixel) -> str:
    return f"{base_url}/o/{pixel.uuid}.gif"


def pixel_html(url: str) -> str:
    return (
        f'<img src="{escape(url)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" />'
    )
