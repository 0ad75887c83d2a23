"""Pixels of a contact (several per contact for multi-rendering) and their public URLs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Campaign, Contact, Pixel, User
from app.models.tracking import MAX_PIXEL_NUMBER
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


def _next_number(db: Session, contact_id: int) -> int:
    """The number after the highest used one; once that is past the range, the lowest free one."""
    highest = db.scalar(select(func.max(Pixel.number)).where(Pixel.contact_id == contact_id)) or 0
    if highest < MAX_PIXEL_NUMBER:
        return highest + 1
    used = set(db.scalars(select(Pixel.number).where(Pixel.contact_id == contact_id)))
    for number in range(1, MAX_PIXEL_NUMBER + 1):
        if number not in used:
            return number
    raise conflict(["body", "number"], f"This contact already has {MAX_PIXEL_NUMBER} pixels, the maximum.")


# Automatic numbers: a parallel create may take the number chosen here first; choose again.
NUMBER_ATTEMPTS = 20


def _insert(db: Session, contact_id: int, number: int) -> Pixel:
    pixel = Pixel(contact_id=contact_id, number=number, uuid=uuid.uuid4().hex)
    db.add(pixel)
    db.commit()
    return pixel


def create_pixel(db: Session, contact: Contact, number: int | None = None) -> Pixel:
    contact_id = contact.id
    if number is not None:
        _check_number_free(db, contact_id, number)
    for _attempt in range(1 if number is not None else NUMBER_ATTEMPTS):
        # A fresh transaction each time: on MariaDB (REPEATABLE READ) a retry in the same one
        # would read the same snapshot and choose the same number again.
        chosen = number if number is not None else _next_number(db, contact_id)
        try:
            return _insert(db, contact_id, chosen)
        except IntegrityError:
            db.rollback()  # (unique contact_id + number) another request took it first
    raise conflict(["body", "number"], "This contact already has a pixel with this number.")


def update_pixel(db: Session, pixel: Pixel, number: int) -> Pixel:
    if number != pixel.number:
        _check_number_free(db, pixel.contact_id, number)
        pixel.number = number
        db.commit()
    return pixel


def delete_pixel(db: Session, pixel: Pixel) -> None:
    db.delete(pixel)  # openings: ON DELETE CASCADE
    db.commit()
