"""Webhook delivery when things go wrong (issue #14): a dispatcher dying mid-batch, several
dispatchers at once, a receiver failing for days, the log and outbox housekeeping. Both legs."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from app.models import Event, User, Webhook, WebhookBatch, WebhookDelivery
from app.settings import Settings
from app.webhooks import batches, sequence
from app.webhooks.dispatcher import Dispatcher
from tests.support.processes import wait_until
from tests.support.webhook_receiver import running_receiver
from tests.support.webhooks import consent_tree, dispatching, hook_settings, ingest, opens


def create(client: TestClient, headers: dict[str, str], url: str, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/webhooks", json={"url": url, **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_a_dispatcher_dying_mid_batch_leaves_it_to_be_sent_again_with_the_same_id(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    with running_receiver() as receiver:
        created = create(client, headers, receiver.url)
        ids = ingest(engine, *opens(consent_tree(db, user), n=3))
        policy = Dispatcher(engine, private_ok).policy
        sequence.assign(engine)
        crashed = batches.claim(engine, created["id"], policy)  # claimed, then the process dies
        assert crashed is not None
        assert batches.claim(engine, created["id"], policy) is None, "leased: nobody else takes it meanwhile"
        with engine.begin() as conn:  # the lease runs out
            conn.execute(update(WebhookBatch).values(next_attempt_at=datetime.now(UTC)))
        with dispatching(engine, private_ok):
            receiver.wait_for(lambda r: len(r.events()) == 3)
    assert {e["id"] for e in receiver.events()} == set(ids)
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    with Session(engine) as session:
        batch = session.scalars(select(WebhookBatch)).one()
        assert batch.status == "delivered"
        log = session.scalars(select(WebhookDelivery)).all()
        assert batch.msg_id == crashed.msg_id == receiver.requests[0].headers["webhook-id"]
        assert [(d.outcome, d.attempt) for d in log] == [("delivered", 2)], "the lost attempt was number 1"


def test_several_dispatchers_deliver_every_event_and_never_one_batch_at_once(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    settings = hook_settings(private_ok, webhook_batch_max=5)
    with running_receiver() as first, running_receiver() as second:
        create(client, headers, first.url)
        create(client, headers, second.url)
        tree = consent_tree(db, user)
        with dispatching(engine, settings), dispatching(engine, settings), dispatching(engine, settings):
            ids = [eid for _ in range(6) for eid in ingest(engine, *opens(tree, n=7))]
            for receiver in (first, second):
                receiver.wait_for(lambda r: len({e["id"] for e in r.events()}) == len(ids), timeout=60)
        for receiver in (first, second):
            assert sorted(e["id"] for e in receiver.events()) == sorted(ids), "each event once, none invented"
            per_batch = Counter(r.headers["webhook-id"] for r in receiver.requests)
            assert set(per_batch.values()) == {1}, "a batch is never sent by two dispatchers"
    with Session(engine) as session:
        assert (
            session.scalar(select(func.count()).select_from(WebhookBatch).where(WebhookBatch.status != "delivered"))
            == 0
        )
        delivered = session.scalar(select(func.sum(WebhookDelivery.event_count)))
        assert delivered == 2 * len(ids), "the log counts every event sent"


def test_events_stored_during_an_attempt_go_out_when_it_ends_not_a_poll_later(
    client: TestClient,
    db: Session,
    engine: Engine,
    user: User,
    headers: dict[str, str],
    private_ok: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long poll interval (5 s): events stored while the webhook's attempt is held by the receiver
    (after a poll found the webhook busy and went idle) are sequenced and sent as soon as that
    attempt ends (the dispatcher wakes), not a poll later."""
    settings = hook_settings(private_ok, webhook_poll_seconds=5.0)
    hold = threading.Event()
    polls: list[int] = []  # attempts each poll started
    poll = Dispatcher.poll

    def counted(self: Dispatcher) -> int:
        polls.append(poll(self))
        return polls[-1]

    monkeypatch.setattr(Dispatcher, "poll", counted)
    with running_receiver(hold=hold) as receiver:
        create(client, headers, receiver.url)
        tree = consent_tree(db, user)
        first = ingest(engine, *opens(tree, n=2))
        with dispatching(engine, settings):
            receiver.wait_for(lambda r: r.arrived == 1, timeout=10)  # the first attempt is in flight
            wait_until(lambda: polls[1:2] == [0], "a poll to find the webhook busy", timeout=10)
            second = ingest(engine, *opens(tree, n=3))
            released = time.monotonic()
            hold.set()
            receiver.wait_for(lambda r: len(r.events()) == 5, timeout=10)
            waited = time.monotonic() - released
    assert sorted(e["id"] for e in receiver.events()) == sorted(first + second)
    assert waited < 2.5, f"the second batch waited {waited:.1f} s: a poll interval, not the end of the attempt"


def test_a_webhook_failing_for_days_is_disabled_and_says_why(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    with running_receiver(fail_first=1000) as receiver:
        created = create(client, headers, receiver.url)
        with engine.begin() as conn:
            conn.execute(update(Webhook).values(failing_since=datetime.now(UTC) - timedelta(days=5, minutes=1)))
        ingest(engine, *opens(consent_tree(db, user)))
        with dispatching(engine, private_ok):
            receiver.wait_for(lambda r: len(r.answered) >= 1)
            deadline = datetime.now(UTC) + timedelta(seconds=20)
            while client.get(f"/api/v1/webhooks/{created['id']}", headers=headers).json()["enabled"]:
                assert datetime.now(UTC) < deadline, "not disabled"
                receiver.wait_for(lambda _r: True, timeout=0.05)
    one = client.get(f"/api/v1/webhooks/{created['id']}", headers=headers).json()
    assert one["disabled_reason"] == "every delivery failed for 5 days"


def test_housekeeping_drops_old_logs_finished_batches_and_old_feed_events(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    with running_receiver() as receiver:
        create(client, headers, receiver.url)
        ids = ingest(engine, *opens(consent_tree(db, user), n=2))
        with dispatching(engine, private_ok):
            receiver.wait_for(lambda r: len(r.events()) == 2)
    old = datetime.now(UTC) - timedelta(days=40)
    with engine.begin() as conn:
        conn.execute(update(WebhookDelivery).values(attempted_at=old))
        conn.execute(update(WebhookBatch).values(created_at=old))
        conn.execute(update(Event).where(Event.event_id == ids[0]).values(created_at=old))
    dispatcher = Dispatcher(engine, private_ok)
    dispatcher.housekeeping()
    dispatcher.close()
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
        assert session.scalar(select(func.count()).select_from(WebhookBatch)) == 0
        assert list(session.scalars(select(Event.event_id))) == [ids[1]]
