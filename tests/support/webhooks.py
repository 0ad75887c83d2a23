"""Shared by the webhook and feed tests: a tree of contacts under each consent, ingesting events
through the real ingest, a dispatcher running in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.models import User
from app.settings import Settings
from app.tracking.events import CLICK, OPEN, Event, new_event_id
from app.tracking.ingest import store_events
from app.webhooks.dispatcher import Dispatcher
from tests import factories


def consent_tree(db: Session, owner: User) -> dict[str, Any]:
    """A campaign, a group, one contact per consent level with a pixel, and a link."""
    with factories.one_commit(db):
        campaign = factories.make_campaign(db, owner)
        group = factories.make_group(db, campaign)
        contacts = {level: factories.make_contact(db, group, tracking=level) for level in ("full", "anonymous", "off")}
        pixels = {level: factories.make_pixel(db, contact) for level, contact in contacts.items()}
        link = factories.make_link(db, campaign, url="https://shop.example.com/spring")
    return {"campaign": campaign, "group": group, "contacts": contacts, "pixels": pixels, "link": link}


def ingest(engine: Engine, *events: tuple[str, int, int, str]) -> list[str]:
    """Store (kind, target id, contact id, client) events through the ingest; returns their ids."""
    now_ms = int(time.time() * 1000)
    batch = []
    for kind, target_id, contact_id, client in events:
        eid = new_event_id()
        batch.append((eid, Event(kind, target_id, contact_id if kind == CLICK else 0, now_ms, client, "", "", eid)))
    store_events(engine, batch)
    return [eid for eid, _ in batch]


def opens(
    tree: dict[str, Any], level: str = "full", n: int = 1, client: str = "browser"
) -> list[tuple[str, int, int, str]]:
    return [(OPEN, tree["pixels"][level].id, 0, client)] * n


def click(tree: dict[str, Any], level: str = "full", client: str = "browser") -> tuple[str, int, int, str]:
    return (CLICK, tree["link"].id, tree["contacts"][level].id, client)


def hook_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(
        update={"webhook_allow_private": True, "webhook_timeout_seconds": 5.0, "webhook_poll_seconds": 0.02, **changes}
    )


@contextmanager
def dispatching(engine: Engine, settings: Settings, **options: Any) -> Iterator[Dispatcher]:
    """A dispatcher polling in a thread until the block ends (retries 10 ms apart by default)."""
    options.setdefault("backoff_base", 0.01)
    dispatcher = Dispatcher(engine, settings, **options)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, kwargs={"stop": stop}, name="dispatcher", daemon=True)
    thread.start()
    try:
        yield dispatcher
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the dispatcher did not stop"
