"""Pixels of a contact (several per contact for multi-rendering) and their public URLs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, ContactStats, Pixel, User
from app.models.tracking import MAX_PIXEL_NUMBER
from app.services.common import conflict, get_owned, paginate


def get_pixel(db: Session, user: User, pixel_id: int) -> Pixel:
    return get_owned(
        db,
        user,
        Pixel,
        pixel_id,
        (Contact, Contact.id == Pixel.contact_id),
        (Campaign, Campaign.id == Contact.campaign_id),
    )


def list_pixels(db: Session, contact: Contact, *, limit: int, offset: int) -> tuple[Sequence[Pixel], int]:
    stmt = select(Pixel).where(Pixel.contact_id == contact.id).order_by(Pixel.number, Pixel.id)
    return paginate(db, stmt, limit=limit, offset=offset)


def _check_number_free(db: Session, contact_id: int, number: int) -> None:
    if db.scalar(select(Pixel.id).where(Pixel.contact_id == contact_id, Pixel.number == number)) is not None:
        raise conflict(["body", "number"], "This contact already has a pixel with this number.")


def _next_number(db: Session, contact_id: int) -> int:
    """The number after the highest used one; once that is past the range, the lowest free one.
    Locking reads: they see the pixels committed since this transaction's snapshot (on MariaDB,
    REPEATABLE READ), so a choice made again after a lost race is a new one."""
    highest_stmt = select(func.max(Pixel.number)).where(Pixel.contact_id == contact_id)
    highest = db.scalar(highest_stmt.with_for_update(read=True)) or 0
    if highest < MAX_PIXEL_NUMBER:
        return highest + 1
    used = set(db.scalars(select(Pixel.number).where(Pixel.contact_id == contact_id).with_for_update(read=True)))
    for number in range(1, MAX_PIXEL_NUMBER + 1):
        if number not in used:
            return number
    raise conflict(["body", "number"], f"This contact already has {MAX_PIXEL_NUMBER} pixels, the maximum.")


# Automatic numbers: a parallel create may take the number chosen here first; choose again.
NUMBER_ATTEMPTS = 20


def _insert(db: Session, contact_id: int, number: int) -> Pixel | None:
    """The new pixel, or None when another request took the number first (unique contact_id +
    number): only this insert is undone (a savepoint), the request's transaction goes on."""
    pixel = Pixel(contact_id=contact_id, number=number, uuid=uuid.uuid4().hex)
    try:
        with db.begin_nested():
            db.add(pixel)
            db.flush()
    except IntegrityError:
        return None
    return pixel


def create_pixel(db: Session, contact: Contact, number: int | None = None) -> Pixel:
    contact_id = contact.id
    if number is not None:
        _check_number_free(db, contact_id, number)
    else:
        # Automatic numbers for one contact are chosen one request at a time: its counter row
        # (which this create's flush updates anyway) is locked first. A number given explicitly
        # by a parallel request can still win the race: choose again.
        stats = select(ContactStats.contact_id).where(
            ContactStats.campaign_id == contact.campaign_id, ContactStats.contact_id == contact_id
        )
        db.execute(stats.with_for_update())
    for _attempt in range(1 if number is not None else NUMBER_ATTEMPTS):
        pixel = _insert(db, contact_id, number if number is not None else _next_number(db, contact_id))
        if pixel is not None:
            return pixel
    raise conflict(["body", "number"], "This contact already has a pixel with this number.")


def update_pixel(db: Session, pixel: Pixel, number: int) -> Pixel:
    if number != pixel.number:
        _check_number_free(db, pixel.contact_id, number)
        pixel.number = number
        db.flush()
    return pixel


def delete_pixel(db: Session, pixel: Pixel) -> None:
    db.delete(pixel)  # openings: ON DELETE CASCADE
    db.flush()
