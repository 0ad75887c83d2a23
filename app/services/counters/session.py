"""The one owner of the report counters on the write paths: no service calls them by hand.

`install(factory)` (called by app/db.make_sessionmaker, so the API, the CLI, the loaders and the
tests' factories all get it) registers three Session events:

- `before_flush`: for the contacts, pixels, openings, clicks, links and groups being deleted and
  the openings/clicks/pixels being changed, while their rows still exist: take their weight off
  the counters (a deleted contact's row off its group's; the hours of every opening and click
  that goes, including those the database's ON DELETE CASCADE removes without the session
  seeing them: by pixel, contact, link or group members) and note the contacts they belong to.
  A campaign (or user) deleted takes all its counters with it by foreign key.
- `after_flush`: recompute the rows of every contact the flush touched (new, edited or moved
  contacts, and those whose pixels, openings or clicks were added, changed or deleted): once
  per flush, in chunks; then add the hours of the openings/clicks inserted or changed.
- `do_orm_execute`: ORM statements run through the session are not flushes
  (`db.execute(insert(Contact), rows)` in the bulk import, `delete(Pixel).where(...)`): the same
  two steps run around the statement itself (new contacts, which have nothing of their own yet,
  by a shorter path: counters/contacts.count_new_contacts) (a statement the owner cannot follow, such as an
  INSERT ... SELECT into a counted table, is refused rather than left uncounted).

Core statements on a Connection are seen by no Session event: their writers go through the
same owner with one intent-level call each: `delete_rows` (the retention purge) and
`add_events` (the tracking ingest: counters/events.py).

Locks are taken in the order every writer takes them, contacts, groups, hours: a change that
takes hours off before the flush first locks its contacts' rows and their groups' (on MariaDB;
a SQLite writer already holds the database's write lock).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, ColumnElement, Delete, Select, Update, delete, event, inspect, or_, select, true
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, sessionmaker
from sqlalchemy.sql import visitors

from app.models import Click, Contact, ContactStatus, Group, Link, Opening, Pixel
from app.services.counters.contacts import (
    count_new_contacts,
    forget_contacts,
    lock_contacts,
    move_reference,
    refresh_contacts,
)
from app.services.counters.hours import count_hours, forget_hours
from app.services.sql import DB, dialect_name

CHUNK = 500
_PENDING = "pixeltrack_counters"  # session.info: what the flush under way changes
# The columns each counted row's counters depend on: a change elsewhere (a name, a pixel's
# number) moves nothing.
_COUNTED: dict[type[Any], tuple[str, ...]] = {
    Contact: ("campaign_id", "group_id", "status", "sent_at", "scheduled_at"),
    Pixel: ("contact_id",),
    Opening: ("contact_id", "campaign_id", "opened_at", "client"),
    Click: ("contact_id", "campaign_id", "clicked_at", "client"),
}
# An UPDATE of contacts that sets none of these moves only what depends on their status and send
# times (counters/contacts.move_reference); `_UNKNOWN` stands for the columns of one that does not say.
_UNKNOWN = ("?",)
_MOVES_CONTACT = {"campaign_id", "group_id", *_UNKNOWN}
_DELETED = (Contact, Pixel, Opening, Click, Link, Group)  # (campaigns and users: by foreign key)
_OWNED = (Pixel, Opening, Click)  # rows of one contact


@dataclass
class Change:
    """What one flush or statement does to the rows the counters are made of."""

    gone: dict[type[Any], list[ColumnElement[bool]]] = field(default_factory=lambda: defaultdict(list))
    moved: dict[type[Any], set[int]] = field(default_factory=lambda: defaultdict(set))  # updated in place (ids)
    contacts: set[int] = field(default_factory=set)  # to recompute after
    groups: set[int] = field(default_factory=set)  # groups contacts move into
    added: dict[type[Any], list[ColumnElement[bool]]] = field(default_factory=lambda: defaultdict(list))

    def rows_go_or_move(self) -> bool:
        return any(self.gone.values()) or any(self.moved.values())

    def anything(self) -> bool:
        return self.rows_go_or_move() or bool(self.contacts) or any(self.added.values())


def _any(*conditions: ColumnElement[bool] | None) -> ColumnElement[bool] | None:
    present = [condition for condition in conditions if condition is not None]
    return or_(*present) if present else None


def _in(column: Any, ids: Iterable[int]) -> ColumnElement[bool] | None:
    ordered = sorted(set(ids))
    return column.in_(ordered) if ordered else None


def _gone(change: Change, model: type[Any]) -> ColumnElement[bool] | None:
    return _any(*change.gone[model])


def _ids(model: type[Any], where: ColumnElement[bool] | None) -> Select[Any] | None:
    return None if where is None else select(model.id).where(where)


def _values(db: DB, column: Any, where: ColumnElement[bool] | None) -> set[int]:
    """The distinct values, by a locking read: on MariaDB a plain read sees the transaction's
    snapshot, which misses a click or opening a worker committed since (a link deleted while
    its clicks were ingested left the new click on its contact's counters); a locking read sees
    the latest committed rows and holds them until the commit."""
    if where is None:
        return set()
    query = select(column).where(where).distinct().with_for_update(read=True)
    return {int(value) for value in db.scalars(query) if value is not None}


def before(db: DB, change: Change) -> None:
    """While the rows still hold their old state: note their contacts, take what goes or moves
    off the counters (contacts' rows off their groups', hours)."""
    for model in _OWNED:
        where = _any(_gone(change, model), _in(model.id, change.moved[model]))
        change.contacts |= _values(db, model.contact_id, where)
    links = _ids(Link, _gone(change, Link))
    if links is not None:
        change.contacts |= _values(db, Click.contact_id, Click.link_id.in_(links))
    contacts = _values(db, Contact.id, _gone(change, Contact))
    groups = _ids(Group, _gone(change, Group))
    members = None if groups is None else select(Contact.id).where(Contact.group_id.in_(groups))
    pixels = _ids(Pixel, _gone(change, Pixel))
    openings = _any(
        _gone(change, Opening),
        _in(Opening.id, change.moved[Opening]),
        None if pixels is None else Opening.pixel_id.in_(pixels),
        _in(Opening.contact_id, contacts),
        None if members is None else Opening.contact_id.in_(members),
    )
    clicks = _any(
        _gone(change, Click),
        _in(Click.id, change.moved[Click]),
        None if links is None else Click.link_id.in_(links),
        _in(Click.contact_id, contacts),
        None if members is None else Click.contact_id.in_(members),
    )
    hours = openings is not None or clicks is not None
    if hours and dialect_name(db) != "sqlite":
        lock_contacts(db, change.contacts | contacts, change.groups)
    forget_contacts(db, contacts)
    if hours:
        forget_hours(db, openings=openings, clicks=clicks)
    change.contacts -= contacts  # (their rows went with them)


def after(db: DB, change: Change) -> None:
    """With the rows in their new state: recompute the touched contacts, add the hours of the
    rows added or moved."""
    for model in _OWNED:
        change.contacts |= _values(db, model.contact_id, _in(model.id, change.moved[model]))
    refresh_contacts(db, change.contacts)
    openings = _any(_in(Opening.id, change.moved[Opening]), *change.added[Opening])
    clicks = _any(_in(Click.id, change.moved[Click]), *change.added[Click])
    if openings is not None or clicks is not None:
        count_hours(db, openings=openings, clicks=clicks)


def delete_rows(db: DB, model: type[Any], where: ColumnElement[bool]) -> int:
    """Delete the `model` rows matching `where` (Core writers: the retention purge) and move the
    counters with them; the number of rows deleted."""
    change = Change()
    change.gone[model].append(where)
    before(db, change)
    deleted = db.execute(delete(model).where(where)).rowcount  # type: ignore[attr-defined]
    after(db, change)
    return int(deleted)


# The Session events.


def _changed(obj: Any, names: tuple[str, ...]) -> bool:
    attrs = inspect(obj).attrs
    return any(attrs[name].history.has_changes() for name in names)


def _before_flush(session: Session, _context: UOWTransaction, _instances: object) -> None:
    change = Change()
    gone: dict[type[Any], set[int]] = defaultdict(set)
    for obj in session.deleted:
        if isinstance(obj, _DELETED):
            gone[type(obj)].add(obj.id)
    for obj in session.dirty:
        names = _COUNTED.get(type(obj))
        if names is None or not _changed(obj, names):
            continue
        if isinstance(obj, Contact):
            change.contacts.add(obj.id)
            change.groups.add(obj.group_id)
        else:
            change.moved[type(obj)].add(obj.id)
    for obj in session.new:
        if isinstance(obj, _OWNED):
            change.contacts.add(obj.contact_id)
    for model, ids in gone.items():
        change.gone[model].append(model.id.in_(sorted(ids)))
    session.info[_PENDING] = change
    if change.rows_go_or_move():
        with session.no_autoflush:
            before(session.connection(), change)


def _after_flush(session: Session, _context: UOWTransaction) -> None:
    change: Change = session.info.pop(_PENDING, None) or Change()
    added: dict[type[Any], set[int]] = defaultdict(set)
    for obj in session.new:
        if isinstance(obj, Contact):
            change.contacts.add(obj.id)
        elif isinstance(obj, _OWNED):
            change.contacts.add(obj.contact_id)
            added[type(obj)].add(obj.id)
    for model in (Opening, Click):
        if added[model]:
            change.added[model].append(model.id.in_(sorted(added[model])))
    if change.anything():
        with session.no_autoflush:
            after(session.connection(), change)


def _forget_pending(session: Session, _previous: object) -> None:
    session.info.pop(_PENDING, None)


def _rows(state: ORMExecuteState) -> list[Mapping[str, Any]]:
    params = state.parameters
    if isinstance(params, Mapping):
        return [params] if params else []
    return list(params or [])


def _contacts_inserted(db: DB, rows: list[Mapping[str, Any]]) -> None:
    """Count the contacts of an INSERT, once they are in: new, they have nothing of their own
    yet (counters/contacts.count_new_contacts: found by the unique (campaign, group, email))."""
    by_group: dict[tuple[int, int], list[str]] = defaultdict(list)
    sent: dict[tuple[int, int], int] = defaultdict(int)
    for row in rows:
        key = (row["campaign_id"], row["group_id"])
        by_group[key].append(row["email"])
        # (The column's default: scheduled.)
        sent[key] += ContactStatus(row.get("status") or ContactStatus.scheduled) is ContactStatus.sent
    for (campaign_id, group_id), emails in sorted(by_group.items()):
        count_new_contacts(db, campaign_id, group_id, emails, sent[(campaign_id, group_id)])


def _inserted(model: type[Any], rows: list[Mapping[str, Any]]) -> Change:
    """The change of an INSERT of these pixels, openings or clicks, once they are in."""
    change = Change()
    change.contacts = {row["contact_id"] for row in rows}
    if model is not Pixel:
        events = [row["event_id"] for row in rows]
        for start in range(0, len(events), CHUNK):
            change.added[model].append(model.event_id.in_(events[start : start + CHUNK]))
    return change


def _set_columns(state: ORMExecuteState) -> set[str]:
    """The columns an UPDATE sets: those of its VALUES, or of its rows when it is a bulk UPDATE
    by primary key; `_UNKNOWN` when it says neither."""
    update: Update = state.statement  # type: ignore[assignment]
    names: set[str] = {str(getattr(column, "key", column)) for column in (update._values or ())}
    for row in _rows(state):
        names.update(str(name) for name in row)
    return names or set(_UNKNOWN)


def _reads(where: ColumnElement[bool], names: set[str]) -> bool:
    """Whether a condition reads a column with one of these names (in any table: conservative)."""
    return any(isinstance(element, Column) and element.key in names for element in visitors.iterate(where))


def _sets_counted(state: ORMExecuteState, model: type[Any]) -> bool:
    """Whether an UPDATE may set a column the counters depend on (`_COUNTED`)."""
    return bool(_set_columns(state) & {*_COUNTED[model], *_UNKNOWN})


def _on_execute(state: ORMExecuteState) -> Any:
    """ORM INSERT/UPDATE/DELETE statements run through the session: the counters move around
    the statement itself."""
    if not (state.is_insert or state.is_update or state.is_delete) or state.bind_mapper is None:
        return None
    model = state.bind_mapper.class_
    if model not in _DELETED or (state.is_update and model not in _COUNTED):
        return None  # campaigns, users (their counters go by foreign key); a link's or group's name
    if state.is_update and not _sets_counted(state, model):
        return None  # a contact's consent, an opening's IP or user agent: no counter reads them
    db = state.session.connection()
    rows = _rows(state)
    if state.is_insert:
        if model not in _COUNTED:
            return None  # a new link or group counts nothing yet
        if not rows or getattr(state.statement, "select", None) is not None:
            raise NotImplementedError(f"the report counters cannot follow this INSERT into {model.__name__}")
        result = state.invoke_statement()
        with state.session.no_autoflush:
            if model is Contact:
                _contacts_inserted(db, rows)
            else:
                after(db, _inserted(model, rows))
        return result
    change = Change()
    if state.is_delete:
        statement: Delete = state.statement  # type: ignore[assignment]
        change.gone[model].append(statement.whereclause if statement.whereclause is not None else true())
    else:
        update: Update = state.statement  # type: ignore[assignment]
        where = update.whereclause if update.whereclause is not None else true()
        sets = _set_columns(state)
        if model is Contact and not state.is_executemany and not sets & _MOVES_CONTACT and not _reads(where, sets):
            # Status and send times only (a bulk "mark sent"), chosen by a condition the change
            # leaves as it was (it still finds the same contacts after): set-based, no recompute.
            with state.session.no_autoflush:
                result = state.invoke_statement()
                matched = getattr(result, "rowcount", -1)
                if matched < 0 or not move_reference(db, where, matched):
                    refresh_contacts(db, _values(db, Contact.id, where))
            return result
        ids = {row["id"] for row in rows} if state.is_executemany else _values(db, model.id, where)
        if model is Contact:
            change.contacts = ids
        else:
            change.moved[model] = ids
    with state.session.no_autoflush:
        before(db, change)
        result = state.invoke_statement()
        after(db, change)
    return result


def install(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Make the sessions of `factory` keep the report counters (see the module docstring)."""
    event.listen(factory, "before_flush", _before_flush)
    event.listen(factory, "after_flush", _after_flush)
    event.listen(factory, "after_soft_rollback", _forget_pending)
    event.listen(factory, "do_orm_execute", _on_execute)
    return factory
