"""Helpers every service uses: ownership scoping, the owned-object lookup, pagination,
conflicts, partial updates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, Select, bindparam, func, inspect, select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.models import Campaign, User
from app.models.base import Base

if TYPE_CHECKING:
    from app.fastread import OwnedReads, Row

T = TypeVar("T")
S = TypeVar("S", bound=Select[Any])

M = TypeVar("M", bound=Base)

# One step of the way from a model up to its campaign: the entity joined and the join's condition.
Join = tuple[type[Any], ColumnElement[bool]]


def owned(stmt: S, user: User) -> S:
    """Restrict a statement that involves `campaigns` to the user's own (admins: all)."""
    if user.is_admin:
        return stmt
    return stmt.where(Campaign.owner_id == user.id)


# get_owned's statements, built once per (model, joins, admin) with bound parameters: building a
# statement and its cache key anew took ~0.3 ms per call (docs/benchmarks.md, authenticated CRUD).
_OWNED_STATEMENTS: dict[tuple[bool, tuple[Any, ...]], Select[Any]] = {}


def join_key(on: ColumnElement[bool]) -> tuple[Any, ...]:
    """A join condition `A.x == B.y` as a hashable key (AttributeError for anything else)."""
    left, right = on.left, on.right
    return (on.operator, left.table.name, left.key, right.table.name, right.key)


def owned_select(what: Sequence[Any], model: type[Any], joins: tuple[Join, ...], admin: bool) -> Select[Any]:
    """SELECT `what` of the `model` row with id :object_id, joined up to its campaign through
    `joins`, whose campaign :owner_id owns (admins: any). Also the statement of app.fastread."""
    (primary_key,) = inspect(model).primary_key  # `id`
    stmt = select(*what).where(primary_key == bindparam("object_id"))
    for entity, on in joins:
        stmt = stmt.join(entity, on)
    if not admin:
        stmt = stmt.where(Campaign.owner_id == bindparam("owner_id"))
    return stmt


def owned_key(model: type[Any], joins: tuple[Join, ...], admin: bool) -> tuple[Any, ...] | None:
    """What identifies an owned statement (None: a join condition that is not `A.x == B.y`)."""
    try:
        return (model, admin, *((entity, join_key(on)) for entity, on in joins))
    except AttributeError:
        return None


def owned_statement(model: type[Any], joins: tuple[Join, ...], admin: bool, *, columns: bool = False) -> Select[Any]:
    """`owned_select` of the model (columns=True: of its table's columns, app.fastread), built
    once per key."""
    key = owned_key(model, joins, admin)
    stmt = _OWNED_STATEMENTS.get((columns, key)) if key is not None else None
    if stmt is None:
        what = list(inspect(model).local_table.columns) if columns else [model]
        stmt = owned_select(what, model, joins, admin)
        if key is not None:
            _OWNED_STATEMENTS[columns, key] = stmt
    return stmt


def get_owned(db: Session, user: User, model: type[M], object_id: int, *joins: Join) -> M:
    """The `model` row with this id if the user owns its campaign (admins: any), joined up to
    `Campaign` through `joins`; else NotFound, "<Model> not found." (someone else's object
    answers exactly as a missing one)."""
    params = {"object_id": object_id} if user.is_admin else {"object_id": object_id, "owner_id": user.id}
    found: M | None = db.scalar(owned_statement(model, joins, user.is_admin), params)
    if found is None:
        raise NotFound(f"{model.__name__} not found.")
    return found


async def read_owned(reads: OwnedReads, user: User, model: type[M], object_id: int, *joins: Join) -> Row:
    """`get_owned` without a Session, on the event loop (app/fastread.py): the row's attributes."""
    found = await reads.row(model, joins, object_id, None if user.is_admin else user.id)
    if found is None:
        raise NotFound(f"{model.__name__} not found.")
    return found


def paginate(db: Session, stmt: Select[T], *, limit: int, offset: int) -> tuple[Sequence[T], int]:
    total = db.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = db.scalars(stmt.limit(limit).offset(offset)).all()
    return items, total


def conflict(loc: Sequence[str | int], msg: str) -> Conflict:
    return Conflict([{"loc": list(loc), "msg": msg, "type": "conflict"}])


def apply_changes(obj: object, changes: dict[str, Any]) -> None:
    for field, value in changes.items():
        setattr(obj, field, value)
