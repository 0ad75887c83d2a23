"""Helpers every service uses: ownership scoping, pagination, conflicts, partial updates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.models import Campaign, User

T = TypeVar("T")
S = TypeVar("S", bound=Select[Any])


def owned(stmt: S, user: User) -> S:
    """Restrict a statement that involves `campaigns` to the user's own (admins: all)."""
    if user.is_admin:
        return stmt
    return stmt.where(Campaign.owner_id == user.id)


def paginate(db: Session, stmt: Select[T], *, limit: int, offset: int) -> tuple[Sequence[T], int]:
    total = db.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = db.scalars(stmt.limit(limit).offset(offset)).all()
    return items, total


def conflict(loc: Sequence[str | int], msg: str) -> Conflict:
    return Conflict([{"loc": list(loc), "msg": msg, "type": "conflict"}])


def apply_changes(obj: object, changes: dict[str, Any]) -> None:
    for field, value in changes.items():
        setattr(obj, field, value)
