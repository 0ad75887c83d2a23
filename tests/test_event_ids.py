"""Tracking event ids and the event wire format (app/tracking/events.py).

Event ids are unpredictable (96 random bits), and the idempotency keys of manual openings
live in a namespace of their pixel: one tenant can neither pre-record nor probe another
tenant's loads. The wire format carries a version marker; the worker still reads the
previous one, so entries left in the stream by an older release are not lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.clients import sync_redis
from app.main import create_asgi
from app.models import Click, Opening, User
from app.settings import Settings
from app.tracking.classify import classify
from app.tracking.events import CLICK, OPEN, SEP, Event, dedupe_key, new_event_id
from app.tracking.queue import DEDUPE_AND_ADD, STREAM
from app.tracking.tokens import TokenCodec
from app.tracking.worker import StreamWorker
from tests import factories
from tests.helpers import count
from tests.support.app_state import app_state, flush_memory


@pytest.fixture
def embedded(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_asgi(settings)) as client:
        yield client


def _codec(client: TestClient) -> TokenCodec:
    codec: TokenCodec = app_state(client).tracker.codec
    return codec


def _flush(client: TestClient) -> None:
    flush_memory(client)


def _successors(event_id: str, n: int) -> list[str]:
    """The ids an attacker would guess come next: the id's trailing hex number plus 1..n."""
    parts = re.fullmatch(r"(.*?)([0-9a-f]+)", event_id)
    assert parts is not None, event_id
    head, number = parts.groups()
    width = len(number) if head == "" else 0
    return [f"{head}{int(number, 16) + k:0{width}x}" for k in range(1, n + 1)]


def test_a_tenant_cannot_suppress_or_probe_another_tenants_opens(
    embedded: TestClient, db: Session, user: User, other_user: User, settings: Settings
) -> None:
    """Bob reads the id of his own tracked open, records manual openings with the ids that
    would come next, and probes one of Alice's ids: Alice's next real open is still recorded,
    and no answer tells Bob anything about Alice's openings."""
    alice_pixel = factories.make_tree(db, user)["pixel"]
    bob_tree = factories.make_tree(db, other_user)
    bob_pixel = bob_tree["pixel"]
    bob = factories.headers_for(settings, other_user)
    codec = _codec(embedded)

    assert embedded.get(f"/o/{codec.pixel_token(bob_pixel.id)}.gif").status_code == 200
    _flush(embedded)
    listed = embedded.get(f"/api/v1/pixels/{bob_pixel.id}/openings", params={"limit": 500}, headers=bob).json()
    [bob_id] = [item["event_id"] for item in listed["items"] if item["event_id"] != bob_tree["opening"].event_id]
    statuses = [
        embedded.post(f"/api/v1/pixels/{bob_pixel.id}/openings", json={"event_id": guess}, headers=bob).status_code
        for guess in _successors(bob_id, 20)
    ]
    assert statuses == [201] * 20

    before = count(db, Opening, pixel_id=alice_pixel.id)
    assert embedded.get(f"/o/{codec.pixel_token(alice_pixel.id)}.gif").status_code == 200
    _flush(embedded)
    assert count(db, Opening, pixel_id=alice_pixel.id) == before + 1

    # Probing Alice's newest id from Bob's pixel: recorded for Bob (no 409 oracle), Alice's row untouched.
    alice_row = db.scalars(
        select(Opening).where(Opening.pixel_id == alice_pixel.id).order_by(Opening.id.desc()).limit(1)
    ).one()
    probe = embedded.post(f"/api/v1/pixels/{bob_pixel.id}/openings", json={"event_id": alice_row.event_id}, headers=bob)
    assert probe.status_code == 201, probe.text
    assert probe.json()["pixel_id"] == bob_pixel.id
    db.expire_all()
    assert db.get_one(Opening, alice_row.id).pixel_id == alice_pixel.id
    assert count(db, Opening, pixel_id=alice_pixel.id) == before + 1


def test_event_ids_are_96_random_bits() -> None:
    ids = [new_event_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", event_id) for event_id in ids)
    assert len(set(ids)) == len(ids)
    # No shared prefix as a per-process counter scheme would have.
    assert len({event_id[:8] for event_id in ids}) > 9_900


def test_encoded_events_carry_a_version_marker_and_round_trip() -> None:
    event = Event(OPEN, 7, 0, 1_700_000_000_000, "", "203.0.113.7", "UA\x1fwith\x1eseps", new_event_id(), True, "HEAD")
    encoded = event.encode()
    assert encoded.split(SEP)[0] == "3"  # opens and clicks: readable by the previous release's worker
    assert Event.decode(encoded) == event._replace(user_agent="UA with seps")
    # A "4" marker with the same layout reads too.
    assert Event.decode("4" + encoded[1:]) == event._replace(user_agent="UA with seps")
    assert Event.decode(encoded.encode()) == Event.decode(encoded)
    human = Event(CLICK, 8, 9, 1, "", "", "", new_event_id(), False, "GET", "prefetch\x1e")
    assert Event.decode(human.encode()) == human._replace(purpose="prefetch ")
    v3 = "3\x1fo\x1f1\x1f0\x1f1\x1f\x1fe\x1f"
    for bad in (
        "2\x1fo\x1f1",
        "2\x1fx" + "\x1f1" * 7,
        "2\x1fo\x1f1\x1f0\x1f1\x1f\x1fe\x1fip\x1fua",  # version 2 was always classified
        v3 + "x\x1fGET\x1f\x1fip\x1fua",  # no such split
        v3 + "m\x1fGET\x1fip\x1fua",  # a field short
        "o\x1f1\x1f0\x1f1\x1fbrowser\x1fip\x1fua",  # version 1 (never released) is not read
        "",
    ):
        with pytest.raises(ValueError, match="malformed"):
            Event.decode(bad)


def test_dedupe_keys_have_one_slot_per_first_pass_split() -> None:
    keys = {dedupe_key(OPEN, 5, 0, machine) for machine in (False, True)}
    keys |= {dedupe_key(CLICK, 5, 6, machine) for machine in (False, True)}
    assert keys == {"pt:d:o:5:h", "pt:d:o:5:m", "pt:d:c:5:6:h", "pt:d:c:5:6:m"}


def test_the_enqueue_script_uses_the_dedupe_keys_it_is_given(redis_client: Any) -> None:
    """Every key the script touches comes in KEYS (Redis Cluster, and the key scheme lives in Python)."""
    script = redis_client.register_script(DEDUPE_AND_ADD)
    first = Event(OPEN, 1, 0, 1, "browser", "", "", new_event_id()).encode()
    second = Event(OPEN, 2, 0, 1, "browser", "", "", new_event_id()).encode()
    batch = "\x1e".join([first, second, first])
    assert script(keys=["test:stream", "test:key:a", "test:key:b", "test:key:a"], args=[60, batch]) == [1, 1, 0]
    assert redis_client.exists("test:key:a", "test:key:b") == 2
    assert not redis_client.keys("pt:d:*")
    assert [fields["e"] for _, fields in redis_client.xrange("test:stream")] == [first, second]


def test_worker_ingests_entries_of_the_previous_format(
    engine: Engine, redis_client: Any, redis_url: str, db: Session, user: User
) -> None:
    """Entries XADDed by the previous release (version 2: classified on the request path) are still
    decoded and inserted after an upgrade, with the class decided then."""
    tree = factories.make_tree(db, user)
    pixel, link, contact = tree["pixel"], tree["link"], tree["contact"]
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="upgrade", block_ms=10)
    opening_v2 = SEP.join(["2", "o", str(pixel.id), "0", "1700000000000", "browser", "0a1b2c", "203.0.113.7", "UA"])
    click_v2 = SEP.join(["2", "c", str(link.id), str(contact.id), "1700000000000", "bot", "3d4e5f", "", "crawler"])
    redis_client.xadd(STREAM, {"e": opening_v2})
    redis_client.xadd(STREAM, {"e": click_v2})
    assert worker.drain() == 2
    assert worker.stats.malformed == 0
    db.commit()
    opening = db.scalars(select(Opening).where(Opening.event_id == "0a1b2c")).one()
    assert (opening.pixel_id, opening.client, opening.reason, opening.ip, opening.user_agent) == (
        pixel.id,
        "browser",
        "event:v2",
        "203.0.113.7",
        "UA",
    )
    click = db.scalars(select(Click).where(Click.event_id == "3d4e5f")).one()
    assert (click.link_id, click.contact_id, click.client, click.reason) == (link.id, contact.id, "bot", "event:v2")


def test_the_ingest_classifies_the_raw_facts(
    engine: Engine, redis_client: Any, redis_url: str, db: Session, user: User
) -> None:
    """The request path leaves `client` empty; the worker decides the class and its reason."""
    tree = factories.make_tree(db, user)
    pixel, link, contact = tree["pixel"], tree["link"], tree["contact"]
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="classify", block_ms=10)
    facts = [
        Event(OPEN, pixel.id, 0, 1_700_000_000_000, "", "17.58.1.2", "Mozilla/5.0", "e1"),
        Event(OPEN, pixel.id, 0, 1_700_000_000_001, "", "203.0.113.7", "", "e2", True, "HEAD"),
        Event(
            CLICK,
            link.id,
            contact.id,
            1_700_000_000_002,
            "",
            "",
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            "e3",
        ),
    ]
    for event in facts:
        redis_client.xadd(STREAM, {"e": event.encode()})
    assert worker.drain() == 3
    db.commit()
    verdicts = [classify(e.user_agent, e.ip, method=e.method, purpose=e.purpose) for e in facts]
    assert [v.client for v in verdicts] == ["apple_mpp", "bot", "browser"]
    assert all(v.reason for v in verdicts)
    stored = select(Opening.event_id, Opening.client, Opening.reason).where(Opening.event_id.in_(["e1", "e2"]))
    openings = db.execute(stored.order_by(Opening.event_id)).all()
    assert [tuple(row) for row in openings] == [("e1", *verdicts[0]), ("e2", *verdicts[1])]
    click = db.scalars(select(Click).where(Click.event_id == "e3")).one()
    assert (click.client, click.reason) == tuple(verdicts[2])


def test_a_key_too_long_to_fit_with_its_pixel_scope_is_still_idempotent(
    client: TestClient, db: Session, user: User, settings: Settings
) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    headers = factories.headers_for(settings, user)
    key = "k" * 64  # the longest key the schema allows: with "<pixel id>~" it exceeds the column
    first = client.post(f"/api/v1/pixels/{pixel.id}/openings", json={"event_id": key}, headers=headers)
    assert first.status_code == 201, first.text
    shown = first.json()["event_id"]
    assert re.fullmatch(r"#[A-Za-z0-9_-]{32}", shown)
    assert client.get(f"/api/v1/openings/{first.json()['id']}", headers=headers).json()["event_id"] == shown
    again = client.post(f"/api/v1/pixels/{pixel.id}/openings", json={"event_id": key}, headers=headers)
    assert again.status_code == 409
    other = client.post(f"/api/v1/pixels/{pixel.id}/openings", json={"event_id": "k" * 63 + "j"}, headers=headers)
    assert other.status_code == 201
    assert db.get_one(Opening, first.json()["id"]).event_id == f"{pixel.id}~{shown}"
