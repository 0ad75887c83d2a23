"""Small factory helpers that build objects straight in the database (no HTTP).

Rows that the report counters depend on (contacts, pixels, openings, clicks) need nothing more:
the app's sessions keep the counters (app/services/counters/session.py) in the same commit.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import argon2
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.credentials import normalize_username
from app.db import READ_ONLY
from app.models import ApiKey, Campaign, Click, Contact, Conversion, Group, Link, Opening, Pixel, User, Webhook
from app.security import create_access_token
from app.services.apikeys import PREFIX_LENGTH, key_hash, new_key
from app.settings import Settings
from app.tracking.conversions import ConversionIn, store
from app.tracking.events import conversion_key, new_event_id

PASSWORD = "correct-horse-battery"
_seq = itertools.count(1)


@cache
def _password_hash() -> str:
    """An argon2id hash of PASSWORD with argon2's cheapest parameters. The app verifies a hash by
    the parameters it carries, so a factory user logs in through the same code for ~0.1 ms
    instead of ~90 ms (the app's production parameters, which its own hashes keep: users
    created through the API or the CLI)."""
    return argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


def _n() -> int:
    return next(_seq)


_ONE_COMMIT: set[int] = set()  # the sessions inside `one_commit`


def _writing(db: Session) -> None:
    """Before a factory writes: on SQLite the tests' session reads in snapshots (tests/conftest.db:
    plain BEGIN, no write lock), and a write in a snapshot that another connection has committed
    past since (the app's flusher, a worker process) fails at once with "database is locked": SQLite
    cannot upgrade a stale snapshot and does not wait. So end the reading transaction (committing
    what is pending, as the factory would) and begin a writer's (BEGIN IMMEDIATE: it waits for the
    lock, then reads the latest data)."""
    if db.get_bind().dialect.name != "sqlite":
        return
    if db.in_transaction():
        db.commit()
    db.connection(execution_options={READ_ONLY: False})


@contextmanager
def one_commit(db: Session) -> Iterator[None]:
    """The factories called inside only flush; one commit at the end (a whole tree costs one
    transaction instead of one per object: the counters still move, by the flushes' hooks)."""
    if id(db) not in _ONE_COMMIT:
        _writing(db)
    _ONE_COMMIT.add(id(db))
    try:
        yield
        db.commit()
    finally:
        _ONE_COMMIT.discard(id(db))


def _save(db: Session, obj: Any) -> Any:
    if id(db) in _ONE_COMMIT:
        db.add(obj)
        db.flush()
    else:
        _writing(db)
        db.add(obj)
        db.commit()
    return obj


def make_user(db: Session, *, username: str | None = None, is_admin: bool = False, is_active: bool = True) -> User:
    name = normalize_username(username or f"user{_n()}")  # stored as the services store it
    return _save(
        db,
        User(
            username=name,
            email=f"{name}@example.com",
            hashed_password=_password_hash(),
            is_admin=is_admin,
            is_active=is_active,
        ),
    )


def make_campaign(db: Session, owner: User, **kw: Any) -> Campaign:
    kw.setdefault("name", f"Campaign {_n()}")
    return _save(db, Campaign(owner_id=owner.id, **kw))


def make_group(db: Session, campaign: Campaign, **kw: Any) -> Group:
    kw.setdefault("name", f"Group {_n()}")
    return _save(db, Group(campaign_id=campaign.id, **kw))


def make_contact(db: Session, group: Group, **kw: Any) -> Contact:
    kw.setdefault("email", f"contact{_n()}@example.com")
    return _save(db, Contact(campaign_id=group.campaign_id, group_id=group.id, **kw))


def make_pixel(db: Session, contact: Contact, number: int = 1) -> Pixel:
    return _save(db, Pixel(contact_id=contact.id, number=number, uuid=uuid.uuid4().hex))


def make_opening(db: Session, pixel: Pixel, **kw: Any) -> Opening:
    contact = db.get(Contact, pixel.contact_id)
    assert contact is not None
    kw.setdefault("opened_at", datetime.now(UTC))
    kw.setdefault("event_id", uuid.uuid4().hex)
    return _save(db, Opening(pixel_id=pixel.id, contact_id=contact.id, campaign_id=contact.campaign_id, **kw))


def make_link(db: Session, campaign: Campaign, url: str = "https://example.com/landing", **kw: Any) -> Link:
    return _save(db, Link(campaign_id=campaign.id, url=url, uuid=uuid.uuid4().hex, **kw))


def make_click(db: Session, link: Link, contact: Contact, **kw: Any) -> Click:
    kw.setdefault("clicked_at", datetime.now(UTC))
    kw.setdefault("event_id", uuid.uuid4().hex)
    return _save(db, Click(link_id=link.id, contact_id=contact.id, campaign_id=link.campaign_id, **kw))


def make_conversion(
    db: Session,
    contact: Contact | None = None,
    *,
    group: Group | None = None,
    value: Decimal | str | None = None,
    currency: str | None = None,
    **kw: Any,
) -> Conversion | None:
    """A conversion of `contact` (or, with `group` and no contact, of an anonymous token of that
    group), written as every path writes them: app/tracking/conversions.store (consent, the
    idempotency key, the outbox row). Returns the stored row; None when consent stored nothing.
    Defaults: name "purchase", no value, no order id (each call counts), occurred_at now."""
    if contact is not None:
        group_id, campaign_id, contact_id = contact.group_id, contact.campaign_id, contact.id
    else:
        assert group is not None, "a contact, or the group of an anonymous token"
        group_id, campaign_id, contact_id = group.id, group.campaign_id, 0
    now = datetime.now(UTC)
    conversion = ConversionIn(
        event_id="v" + new_event_id(),
        campaign_id=campaign_id,
        group_id=group_id,
        contact_id=contact_id,
        name=kw.pop("name", "purchase"),
        value=None if value is None else Decimal(value),
        currency=currency,
        order_id=kw.pop("order_id", None),
        source=kw.pop("source", "api"),
        occurred_at=kw.pop("occurred_at", now),
        **kw,
    )
    store(db.connection(), [conversion], now=now)
    keys = {conversion.event_id}
    if conversion.order_id is not None:
        for whose in {contact_id or None, None}:
            keys.add(conversion_key(campaign_id, whose, conversion.order_id))
    if id(db) in _ONE_COMMIT:
        db.flush()
    else:
        db.commit()
    return db.scalars(select(Conversion).where(Conversion.event_id.in_(keys))).first()


def make_webhook(db: Session, owner: User, **kw: Any) -> Webhook:
    """A webhook row as the API stores it, except its secret (not sealed: never signs anything)."""
    kw.setdefault("url", "https://hooks.example.com/pixeltracking")
    kw.setdefault("events", "open,click")
    kw.setdefault("secret", "not-a-sealed-secret")
    return _save(db, Webhook(owner_id=owner.id, include_machine=False, enabled=True, cursor_seq=0, **kw))


def make_api_key(db: Session, owner: User, **kw: Any) -> tuple[ApiKey, str]:
    """A stored API key of `owner` and the key itself (`pt_…`), as POST /api/v1/api-keys makes them."""
    key = new_key()
    kw.setdefault("name", f"Key {_n()}")
    row = _save(db, ApiKey(owner_id=owner.id, prefix=key[:PREFIX_LENGTH], key_hash=key_hash(key), **kw))
    return row, key


def make_tree(db: Session, owner: User) -> dict[str, Any]:
    """One of everything, owned by `owner`: campaign, group, contact, pixel, opening, link."""
    with one_commit(db):
        campaign = make_campaign(db, owner)
        group = make_group(db, campaign)
        contact = make_contact(db, group)
        pixel = make_pixel(db, contact)
        opening = make_opening(db, pixel)
        link = make_link(db, campaign)
    return {"campaign": campaign, "group": group, "contact": contact, "pixel": pixel, "opening": opening, "link": link}


def make_targets(db: Session, owner: User, count: int) -> tuple[list[Pixel], list[Link], Contact]:
    """A tree (make_tree) and `count` more pixels of its contact and `count` links of its campaign:
    many ids to spread over stream partitions."""
    tree = make_tree(db, owner)
    with one_commit(db):
        pixels = [make_pixel(db, tree["contact"], number=n + 2) for n in range(count)]
        links = [make_link(db, tree["campaign"], url=f"https://example.com/{n}") for n in range(count)]
    return pixels, links, tree["contact"]


def token_for(settings: Settings, user: User, **kw: Any) -> str:
    return create_access_token(
        user.id,
        user.token_version,
        secret=settings.secret_key(),
        algorithm=settings.api_secret_algorithm,
        expires_minutes=kw.pop("expires_minutes", 30),
        **kw,
    )


def headers_for(settings: Settings, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(settings, user)}"}
