"""Preparing a send: which contacts, in contact-id chunks, each with its pixel, and the campaign's
links for a set of destination URLs (the render and the send sheet).

The one exception to one transaction per request (docs/transactions.md): what a chunk needs is
created in its own transaction (`app.db.session_scope`, run again on a MariaDB deadlock),
committed before the chunk is streamed, so that every URL a client has received works, and a
broken stream resumes with `after_contact_id` without creating anything twice.

- Pixels: a contact that has none gets pixel number 1, all of the chunk's in one INSERT ... IGNORE
  in contact-id order, through the session (so the report counters move with it,
  app/services/counters/). Two renders of the same contacts meet on the first row both insert:
  the second waits for the first to commit, keeps its pixels (IGNORE) and reads them back by a
  locking read (on MariaDB a plain read would see its own older snapshot). A render and a
  single pixel create for the same contact (which locks the contact's counter row first) may
  deadlock: MariaDB rolls one back, and it runs again (`app.db.retrying`, TransactionRoute).
- Links: one per distinct destination URL in the campaign, an existing one with that URL (not the
  trap link) reused. There is no unique index on a 2,048-character URL, so the campaign's row is
  locked first (`FOR UPDATE`; SQLite writers hold the database's lock anyway): concurrent renders
  of one campaign look up and create their links one after the other, and never create two links
  for one URL.
- The trap link: one per campaign (`trap`), created by the first render that asks for it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import retrying, session_scope
from app.errors import NotFound
from app.models import Campaign, Contact, ContactStatus, Group, Link, Pixel, Tracking
from app.models.base import utcnow
from app.services.contacts import filter_contacts

CHUNK = 1000  # contacts per transaction
_LOOKUP = 500  # ids or URLs per IN (...)
MAX_REPORTED = 100
TRAP_NAME = "trap link"


@dataclass(frozen=True)
class Selection:
    """Which contacts of a campaign: a group's or a list of ids, filtered as the contact list is."""

    campaign_id: int
    group_id: int | None = None
    contact_ids: tuple[int, ...] | None = None  # sorted, distinct
    status: ContactStatus | None = None
    scheduled_before: datetime | None = None
    scheduled_after: datetime | None = None
    after_contact_id: int = 0

    def statement(self, after: int, ids: Sequence[int] | None = None) -> Any:
        stmt = select(
            Contact.id, Contact.email, Contact.name, Contact.tracking, Contact.scheduled_at, Contact.status
        ).where(Contact.campaign_id == self.campaign_id, Contact.id > after)
        if self.group_id is not None:
            stmt = stmt.where(Contact.group_id == self.group_id)
        if ids is not None:
            stmt = stmt.where(Contact.id.in_(ids))
        stmt = filter_contacts(
            stmt, status=self.status, scheduled_before=self.scheduled_before, scheduled_after=self.scheduled_after
        )
        return stmt.order_by(Contact.id)


def select_contacts(
    db: Session,
    campaign: Campaign,
    *,
    group_id: int | None = None,
    contact_ids: Sequence[int] | None = None,
    status: ContactStatus | None = None,
    scheduled_before: datetime | None = None,
    scheduled_after: datetime | None = None,
    after_contact_id: int | None = None,
) -> Selection:
    """The selection, checked: a group or contacts of another campaign (or tenant) are 404s, as
    missing ones are; the contacts' 404 lists each offending `contact_ids` entry."""
    if group_id is not None:
        found = db.scalar(select(Group.id).where(Group.id == group_id, Group.campaign_id == campaign.id))
        if found is None:
            raise NotFound("Group not found.")
    ids: tuple[int, ...] | None = None
    if contact_ids is not None:
        distinct = sorted(set(contact_ids))
        known: set[int] = set()
        for start in range(0, len(distinct), _LOOKUP):
            chunk = distinct[start : start + _LOOKUP]
            known.update(
                db.scalars(select(Contact.id).where(Contact.campaign_id == campaign.id, Contact.id.in_(chunk)))
            )
        missing = [
            {"loc": ["body", "contact_ids", index], "msg": "Contact not found in this campaign.", "type": "not_found"}
            for index, contact_id in enumerate(contact_ids)
            if contact_id not in known
        ]
        if missing:
            raise NotFound(missing[:MAX_REPORTED])
        ids = tuple(distinct)
    return Selection(campaign.id, group_id, ids, status, scheduled_before, scheduled_after, after_contact_id or 0)


def count(db: Session, selection: Selection, *, limit: int) -> int:
    """How many contacts the selection has, counted up to `limit + 1`."""
    ids = None if selection.contact_ids is None else list(selection.contact_ids)
    stmt = selection.statement(selection.after_contact_id, ids).limit(limit + 1).subquery()
    return db.scalar(select(func.count()).select_from(stmt)) or 0


@dataclass(frozen=True, slots=True)
class Recipient:
    id: int
    email: str
    name: str | None
    tracking: str
    scheduled_at: datetime | None
    status: str
    pixel_id: int | None  # None: tracking off, or no pixel wanted


def _ignore(stmt: Insert) -> Insert:
    return stmt.prefix_with("IGNORE", dialect="mysql").prefix_with("OR IGNORE", dialect="sqlite")


def _first_pixels(db: Session, contact_ids: Sequence[int], *, latest: bool) -> dict[int, int]:
    """contact id → the id of its lowest-numbered pixel; `latest`: by a locking read, which sees
    the rows committed since this transaction's snapshot (MariaDB's REPEATABLE READ)."""
    found: dict[int, int] = {}
    for start in range(0, len(contact_ids), _LOOKUP):
        query = (
            select(Pixel.contact_id, Pixel.id)
            .where(Pixel.contact_id.in_(contact_ids[start : start + _LOOKUP]))
            .order_by(Pixel.contact_id, Pixel.number)
        )
        for contact_id, pixel_id in db.execute(query.with_for_update(read=True) if latest else query):
            found.setdefault(contact_id, pixel_id)
    return found


def ensure_pixels(db: Session, contact_ids: Sequence[int]) -> dict[int, int]:
    """contact id → its pixel (the lowest-numbered), pixel number 1 created for those without one
    (`contact_ids` in ascending order). A contact deleted meanwhile has none."""
    found = _first_pixels(db, contact_ids, latest=False)
    missing = [contact_id for contact_id in contact_ids if contact_id not in found]
    if missing:
        now = utcnow()
        rows = [{"contact_id": c, "number": 1, "uuid": uuid.uuid4().hex, "created_at": now} for c in missing]
        db.execute(_ignore(insert(Pixel)), rows)
        found.update(_first_pixels(db, missing, latest=True))
    return found


def _lock_campaign(db: Session, campaign_id: int) -> bool | None:
    """Lock the campaign; its `attribution_default` (None: the campaign is gone)."""
    found: bool | None = db.scalar(
        select(Campaign.attribution_default).where(Campaign.id == campaign_id).with_for_update()
    )
    return found


def ensure_links(db: Session, campaign_id: int, urls: Sequence[str], *, attribution: bool = False) -> list[int]:
    """The link id of each URL (in order): an existing link of the campaign with exactly that URL
    (the oldest; never the trap link), else a new one, with `attribution` (the campaign's
    `attribution_default`). Call with the campaign locked."""
    existing: dict[str, int] = {}
    for start in range(0, len(urls), _LOOKUP):
        rows = db.execute(
            select(Link.url, Link.id)
            .where(Link.campaign_id == campaign_id, Link.trap.is_(False), Link.url.in_(urls[start : start + _LOOKUP]))
            .order_by(Link.id)
            .with_for_update(read=True)
        )
        for url, link_id in rows:
            existing.setdefault(url, link_id)
    new = [
        Link(campaign_id=campaign_id, url=url, uuid=uuid.uuid4().hex, attribution=attribution)
        for url in urls
        if url not in existing
    ]
    if new:
        db.add_all(new)
        db.flush()
        existing.update((link.url, link.id) for link in new)
    return [existing[url] for url in urls]


def ensure_trap_link(db: Session, campaign_id: int, url: str) -> int:
    """The campaign's trap link, created on first use. Call with the campaign locked.

    A locking read, as in `ensure_links`: on MariaDB a plain read would see the transaction's
    snapshot, taken before the campaign's lock was granted, and miss a trap link another render
    committed while this one waited (two trap links; the concurrency test caught it)."""
    found = db.scalar(
        select(Link.id)
        .where(Link.campaign_id == campaign_id, Link.trap.is_(True))
        .order_by(Link.id)
        .limit(1)
        .with_for_update(read=True)
    )
    if found is not None:
        return found
    link = Link(campaign_id=campaign_id, url=url, uuid=uuid.uuid4().hex, name=TRAP_NAME, trap=True)
    db.add(link)
    db.flush()
    return link.id


@dataclass
class Links:
    """The links a render needs, resolved once (in the first chunk with a tracked contact)."""

    urls: list[str] = field(default_factory=list)
    trap_url: str | None = None  # the trap link's destination when one is wanted
    ids: list[int] | None = None
    trap_id: int | None = None

    def resolve(self, db: Session, campaign_id: int) -> bool:
        """Find or create them (False: the campaign is gone)."""
        if not self.urls and self.trap_url is None:
            self.ids = []
            return True
        attribution = _lock_campaign(db, campaign_id)
        if attribution is None:
            return False
        ids = ensure_links(db, campaign_id, self.urls, attribution=attribution)
        trap = ensure_trap_link(db, campaign_id, self.trap_url) if self.trap_url is not None else None
        self.ids, self.trap_id = ids, trap
        return True


def _id_slices(selection: Selection, size: int) -> Iterator[Sequence[int] | None]:
    """Per chunk: None (the next contacts by id), or the next slice of the ids asked for."""
    if selection.contact_ids is None:
        while True:
            yield None
    ids = [i for i in selection.contact_ids if i > selection.after_contact_id]
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


# A prepared chunk: (its recipients, the rows read, the last id read), or None: the campaign is gone.
_Prepared = tuple[list[Recipient], int, int] | None
_END: Any = object()


@dataclass(frozen=True)
class _Chunk:
    """One chunk's preparation, a whole transaction (run again on a deadlock)."""

    factory: sessionmaker[Session]
    selection: Selection
    after: int
    ids: Sequence[int] | None
    size: int
    pixels: bool
    links: Links | None

    def __call__(self) -> _Prepared:
        """(the recipients, rows read, the last id read), or None when the campaign is gone."""
        links = self.links
        resolved: tuple[list[int] | None, int | None] = (
            (links.ids, links.trap_id) if links is not None else (None, None)
        )
        try:
            with session_scope(self.factory) as db:
                rows = db.execute(self.selection.statement(self.after, self.ids).limit(self.size)).all()
                tracked = [row.id for row in rows if row.tracking != Tracking.off.value]
                unresolved = links is not None and links.ids is None and tracked
                if unresolved and links is not None and not links.resolve(db, self.selection.campaign_id):
                    return None
                made = ensure_pixels(db, tracked) if self.pixels and tracked else {}
        except BaseException:
            if links is not None:
                links.ids, links.trap_id = resolved  # (what a rolled-back run resolved is gone)
            raise
        out = [
            Recipient(row.id, row.email, row.name, row.tracking, row.scheduled_at, row.status, made.get(row.id))
            for row in rows
            if not (self.pixels and row.tracking != Tracking.off.value and row.id not in made)  # deleted meanwhile
        ]
        return out, len(rows), rows[-1].id if rows else self.after


def recipients(
    factory: sessionmaker[Session],
    selection: Selection,
    *,
    pixels: bool,
    links: Links | None = None,
    chunk: int | None = None,
) -> Iterator[list[Recipient]]:
    """The selected contacts in contact-id order, a committed chunk at a time: with `pixels`, each
    tracked contact (not `off`) with its pixel, created when missing; `links`, resolved in the
    first chunk that has a tracked contact. Stops if the campaign is deleted meanwhile.

    The next chunk is prepared in a thread of its own while the caller works on this one (the
    database's time overlaps the render's); at most one chunk ahead, so memory stays bounded.
    A caller that stops early waits for that chunk's transaction to end."""
    size = chunk or CHUNK
    slices = _id_slices(selection, size)
    workers: set[int] = set()  # the thread ident of the pool's worker

    def run(work: _Chunk) -> _Prepared:
        workers.add(threading.get_ident())
        return retrying(work, what="send preparation chunk")

    def prepare(after: int) -> tuple[bool, Future[_Prepared]] | None:
        ids = next(slices, _END)
        if ids is _END:
            return None
        return ids is None, pool.submit(run, _Chunk(factory, selection, after, ids, size, pixels, links))

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendprep")
    try:
        pending = prepare(selection.after_contact_id)
        while pending is not None:
            by_keyset, future = pending
            result = future.result()
            if result is None:
                return
            out, read, last = result
            pending = None if by_keyset and read < size else prepare(last)
            if out:
                yield out
    finally:
        # Let the chunk under way commit (or fail) before returning; but an abandoned generator
        # may be collected by the garbage collector in the worker itself, which cannot wait for itself.
        pool.shutdown(wait=threading.get_ident() not in workers)
