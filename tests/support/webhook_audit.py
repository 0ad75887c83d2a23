"""For the webhook fault tests with real processes (tests/test_webhook_processes.py): a webhook
written straight into a database, `pixeltrack dispatcher` as a child process, a receiver that
can hold one request (so a fault lands mid-batch), and the audit every scenario ends with."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from app.models import Campaign, Contact, Event, Opening, Pixel, Webhook, WebhookBatch, WebhookDelivery
from app.settings import Settings
from app.webhooks import signing
from tests.support.pixeltrack_process import PIXELTRACK
from tests.support.processes import wait_until
from tests.support.webhook_receiver import Receiver

# Short leases and timeouts, so that a batch whose attempt was cut short goes out again within a
# test's budget (the defaults are 10 s + 30 s), and retries 0.05 s apart are not needed: the
# scenarios here lose attempts, the receiver does not fail them.
DISPATCHER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_POLL_SECONDS": "0.05",
    "WEBHOOK_TIMEOUT_SECONDS": "3",
    "WEBHOOK_LEASE_SECONDS": "1",
    "WEBHOOK_BATCH_MAX": "50",
    "LOG_LEVEL": "WARNING",
}


def add_webhook(engine: Engine, settings: Settings, pixel_id: int, url: str) -> str:
    """A webhook of the owner of `pixel_id` for every event type; returns its signing secret."""
    secret = signing.new_secret()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        owner = conn.scalar(
            select(Campaign.owner_id)
            .join(Contact, Contact.campaign_id == Campaign.id)
            .join(Pixel, Pixel.contact_id == Contact.id)
            .where(Pixel.id == pixel_id)
        )
        conn.execute(
            insert(Webhook).values(
                owner_id=owner,
                url=url,
                events="open,click,conversion",
                include_machine=False,
                secret=signing.seal(settings, secret),
                enabled=True,
                cursor_seq=0,
                created_at=now,
                updated_at=now,
            )
        )
    return secret


def start_dispatcher(env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """`pixeltrack dispatcher`, returned once it runs (its signal handlers set: SIGTERM stops it cleanly)."""
    with log.open("ab") as out:
        proc = subprocess.Popen([str(PIXELTRACK), "dispatcher"], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)

    def running() -> bool:
        assert proc.poll() is None, f"the dispatcher exited ({proc.returncode}): {log.read_text(errors='replace')}"
        return "dispatcher: delivering" in log.read_text(errors="replace")

    wait_until(running, "the dispatcher to start", timeout=30, interval=0.05)
    return proc


def ok_ids(receiver: Receiver) -> set[str]:
    """The event ids of every request the receiver answered with a 2xx."""
    with receiver.changed:
        requests = list(receiver.requests)
    return {e["id"] for r in requests if 200 <= r.status < 300 for e in r.json()["data"]}


def stored_ids(engine: Engine) -> set[str] | None:
    """The ids of the stored events; None while the database does not answer."""
    try:
        with engine.connect() as conn:
            return set(conn.scalars(select(Event.event_id)))
    except SQLAlchemyError:
        return None


def wait_all_delivered(engine: Engine, receiver: Receiver, proc: subprocess.Popen[bytes], timeout: float) -> None:
    def done() -> bool:
        assert proc.poll() is None, f"the dispatcher exited ({proc.returncode})"
        stored = stored_ids(engine)
        return stored is not None and bool(stored) and stored <= ok_ids(receiver)

    wait_until(done, "every stored event to be delivered", timeout=timeout, interval=0.1)


def hold_one_request(receiver: Receiver) -> None:
    """From now on the receiver holds its requests; returns once one is held (mid-batch)."""
    assert receiver.hold is not None
    receiver.hold.clear()
    receiver.wait_for(lambda r: r.arrived > len(r.requests), timeout=20)


@dataclass
class Audit:
    stored: int
    requests: int
    batches: int
    resent: dict[str, int]  # webhook-id → times received, for those received more than once
    attempts: dict[str, list[tuple[int, str]]]  # webhook-id → its logged (attempt, outcome)


def audit(engine: Engine, receiver: Receiver, secret: str) -> Audit:
    """What every scenario ends with: every stored event delivered at least once, none invented,
    every signature valid (Standard Webhooks package), and the deliveries log consistent with what
    the receiver saw (each batch delivered once, with the events it holds, its attempts in order)."""
    with receiver.changed:
        requests = list(receiver.requests)
    with engine.connect() as conn:
        events: dict[int, str] = {row.id: row.event_id for row in conn.execute(select(Event.id, Event.event_id))}
        openings = conn.scalar(select(func.count()).select_from(Opening))
        stored_batches = conn.execute(
            select(WebhookBatch.msg_id, WebhookBatch.status, WebhookBatch.event_ids, WebhookBatch.attempts)
        ).all()
        log = conn.execute(
            select(
                WebhookDelivery.msg_id, WebhookDelivery.attempt, WebhookDelivery.outcome, WebhookDelivery.event_count
            ).order_by(WebhookDelivery.id)
        ).all()
    stored = set(events.values())
    assert openings == len(stored), "an event for every stored opening (the outbox is in its transaction)"
    seen: defaultdict[str, list[set[str]]] = defaultdict(list)
    for request in requests:
        payload = request.verify(secret)  # raises unless a signature verifies
        assert payload["type"] == "events"
        seen[request.headers["webhook-id"]].append({e["id"] for e in payload["data"]})
    delivered = ok_ids(receiver)
    assert stored <= delivered, f"{len(stored - delivered)} stored events never delivered"
    sent = {eid for sets in seen.values() for ids in sets for eid in ids}
    assert sent <= stored, f"invented events: {sorted(sent - stored)[:5]}"
    batches = {b.msg_id: b for b in stored_batches}
    assert set(seen) <= set(batches), "every request is a batch of the outbox"
    in_batches: list[str] = []
    for msg_id, batch in batches.items():
        ids = {events[i] for i in json.loads(batch.event_ids) if i in events}
        in_batches += ids
        assert batch.status == "delivered", (msg_id, batch.status)
        assert all(s == ids for s in seen[msg_id]), "a retry sends the same events under the same webhook-id"
    assert sorted(in_batches) == sorted(stored), "each event in exactly one batch"
    attempts: defaultdict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in log:
        attempts[row.msg_id].append((row.attempt, row.outcome))
        if row.outcome == "delivered":
            assert row.event_count == len(seen[row.msg_id][-1])
    for msg_id, batch in batches.items():
        logged = attempts[msg_id]
        assert [o for _, o in logged] == ["delivered"], f"{msg_id}: {logged}"  # lost attempts leave no row
        assert logged[-1][0] == batch.attempts
        assert len(seen[msg_id]) >= 1
    return Audit(
        stored=len(stored),
        requests=len(requests),
        batches=len(batches),
        resent={m: len(s) for m, s in seen.items() if len(s) > 1},
        attempts=dict(attempts),
    )
