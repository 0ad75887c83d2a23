"""Contacts, pixels and links deleted through the API while their opens and clicks are being
ingested, on both database legs.

- SQLite: every writing transaction takes the write lock before its first read (`BEGIN
  IMMEDIATE`, app/db.py), so a deletion's "before" reads are never stale: the report counters
  stay equal to a recompute from the rows (no ghost opens).
- MariaDB: a deadlock (1213) or lock wait timeout between a deletion and an ingest batch runs
  that transaction again (app/routing.TransactionRoute, app/db.retrying): every deletion
  answers 204 and no batch fails.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.db import make_sessionmaker
from app.models import Click, Contact, Link, Opening, Pixel, User
from app.settings import Settings
from app.tracking.events import CLICK, OPEN, Event, new_event_id
from app.tracking.ingest import IngestResult, store_events
from tests import factories
from tests.helpers import counter_drift

pytestmark = pytest.mark.slow  # long: not in the fast loop

ROUNDS = 200
LINKS = 5


class Ingester:
    """Stores batches of opens and clicks of every contact (deleted ones included) as the
    worker and the in-process flusher do, one per `start()` (so that each deletion races with
    batches instead of waiting behind a busy loop); keeps every error."""

    def __init__(self, engine: Engine, pixels: dict[int, int], links: list[int], campaign_at_ms: int) -> None:
        self.engine = engine
        self.pixels = pixels  # contact id → pixel id
        self.links = links
        self.at_ms = campaign_at_ms
        self.batches = 0
        self.totals = IngestResult()
        self.errors: list[Exception] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._go = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._run, name="ingester", daemon=True)
        self._random = random.Random(10)

    def _batch(self) -> list[tuple[str, Event]]:
        events = []
        for contact_id in self._random.sample(sorted(self.pixels), 12):
            at = self.at_ms + self._random.randrange(3_600_000 * 48)
            client = self._random.choice(["browser", "apple_mpp", "bot"])
            events.append(Event(OPEN, self.pixels[contact_id], 0, at, client, "", "", new_event_id()))
            link = self._random.choice(self.links)
            events.append(Event(CLICK, link, contact_id, at + 1000, "browser", "", "", new_event_id()))
        return [(event.event_id, event) for event in events]

    def start(self, batches: int) -> int:
        """Let `batches` more batches run; returns the batch count to wait for."""
        with self._changed:
            self._target = getattr(self, "_target", 0) + batches
            target = self._target
        self._go.release(batches)
        return target

    def _run(self) -> None:
        while True:
            self._go.acquire()
            if self._stop.is_set():
                return
            try:
                self.totals += store_events(self.engine, self._batch())
            except Exception as exc:  # the test reports it
                self.errors.append(exc)
            with self._changed:
                self.batches += 1
                self._changed.notify_all()

    def wait(self, target: int, timeout: float = 30.0) -> None:
        """Block until `target` batches are done."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.batches < target:
                remaining = deadline - time.monotonic()
                assert remaining > 0, "the ingester made no progress"
                self._changed.wait(remaining)

    def __enter__(self) -> Ingester:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._go.release()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()


def _world(db: Session, user: User) -> tuple[Any, dict[int, int], list[int]]:
    campaign = factories.make_campaign(db, user)
    groups = [factories.make_group(db, campaign) for _ in range(2)]
    pixels: dict[int, int] = {}
    for index in range(ROUNDS + 20):
        contact = factories.make_contact(db, groups[index % 2], status="sent", sent_at=datetime(2026, 3, 1, tzinfo=UTC))
        pixels[contact.id] = factories.make_pixel(db, contact).id
    links = [factories.make_link(db, campaign, url=f"https://example.com/{n}").id for n in range(LINKS)]
    return campaign, pixels, links


def test_deleting_contacts_pixels_and_links_while_ingesting_keeps_counters_and_fails_nothing(
    client: TestClient, engine: Engine, db: Session, user: User, settings: Settings
) -> None:
    headers = factories.headers_for(settings, user)
    campaign, pixels, links = _world(db, user)
    contact_ids = sorted(pixels)
    statuses: list[tuple[str, int]] = []
    with Ingester(engine, pixels, links, 1_772_323_200_000) as ingester:
        for round_ in range(ROUNDS):
            target = ingester.start(2)  # two batches race with this round's deletion
            if round_ % 2 == 0:
                path = f"/api/v1/contacts/{contact_ids[round_]}"
            else:
                path = f"/api/v1/pixels/{pixels[contact_ids[round_]]}"
            statuses.append((path, client.delete(path, headers=headers).status_code))
            if round_ % 50 == 49:
                link_path = f"/api/v1/links/{links[round_ // 50]}"
                statuses.append((link_path, client.delete(link_path, headers=headers).status_code))
            ingester.wait(target)

    assert [s for s in statuses if s[1] != 204] == [], "deletions failed"
    assert ingester.errors == [], f"ingest batches failed: {ingester.errors[:3]}"
    assert ingester.totals.inserted > 0
    assert ingester.totals.skipped_missing > 0  # batches did meet deleted contacts and pixels

    with engine.begin() as conn:
        assert counter_drift(conn) == []
    db.commit()
    opens = db.scalar(select(func.count()).select_from(Opening).where(Opening.campaign_id == campaign.id))
    openers = db.scalar(select(func.count(func.distinct(Opening.contact_id))).where(Opening.campaign_id == campaign.id))
    clicks = db.scalar(select(func.count()).select_from(Click).where(Click.campaign_id == campaign.id))
    stats = client.get(f"/api/v1/campaigns/{campaign.id}/stats", headers=headers).json()
    assert (stats["total_opens"], stats["unique_opens"], stats["clicks"]) == (opens, openers, clicks)
    left = db.scalar(select(func.count()).select_from(Contact).where(Contact.campaign_id == campaign.id))
    assert stats["contacts_sent"] == left == ROUNDS + 20 - ROUNDS // 2
    assert stats["pixels"] == db.scalar(
        select(func.count()).select_from(Pixel).join(Contact).where(Contact.campaign_id == campaign.id)
    )


@pytest.mark.parametrize("target", ["link", "contact", "pixel"])
def test_a_row_committed_after_the_deleting_transaction_began_is_taken_off_the_counters(
    engine: Engine, db: Session, user: User, target: str
) -> None:
    """The race that made a deletion miss a click (MariaDB, REPEATABLE READ): the deleting
    transaction reads first (its snapshot starts), a worker then commits an event of the row it
    deletes, and the deletion's own reads must still see that event (locking reads), so that no
    ghost open or click stays on the counters. Deterministic: no threads, one step after another."""
    tree = factories.make_tree(db, user)
    link_id, contact_id, pixel_id = tree["link"].id, tree["contact"].id, tree["pixel"].id
    deleting = make_sessionmaker(engine)()
    try:
        row = deleting.get({"link": Link, "contact": Contact, "pixel": Pixel}[target], tree[target].id)
        assert row is not None  # (the snapshot of the deleting transaction starts here)
        at = int(datetime.now(UTC).timestamp() * 1000)
        events = [
            (new_event_id(), Event(CLICK, link_id, contact_id, at, "browser", "", "", new_event_id())),
            (new_event_id(), Event(OPEN, pixel_id, 0, at, "browser", "", "", new_event_id())),
        ]
        if engine.dialect.name != "sqlite":  # (SQLite: the deleting transaction holds the write lock)
            assert store_events(engine, events).inserted == 2
        deleting.delete(row)
        deleting.commit()
    finally:
        deleting.close()
    with engine.connect() as conn, conn.begin():
        assert counter_drift(conn) == []
