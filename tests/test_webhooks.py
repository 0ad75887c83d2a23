"""Webhooks (issue #14): the API, SSRF refusals, and delivery end to end to a real receiver on
loopback, signatures verified with the Standard Webhooks package, on both database legs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from app.models import User, Webhook, WebhookBatch
from app.settings import Settings
from app.webhooks import ssrf
from tests import factories
from tests.helpers import assert_error, count
from tests.support.webhook_receiver import Receiver, running_receiver
from tests.support.webhooks import click, consent_tree, dispatching, hook_settings, ingest, opens


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def create(client: TestClient, headers: dict[str, str], url: str, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/webhooks", json={"url": url, **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# The API.


def test_create_shows_the_secret_once_and_lists_never_show_it(
    client: TestClient, headers: dict[str, str], private_ok: Settings, receiver: Receiver
) -> None:
    created = create(client, headers, receiver.url, events=["click", "open", "click"], description="CRM")
    assert created["secret"].startswith("whsec_")
    assert len(created["secret"]) >= 6 + 32
    assert created["events"] == ["open", "click"]
    assert created["enabled"] is True
    listed = client.get("/api/v1/webhooks", headers=headers).json()
    assert listed["total"] == 1
    assert "secret" not in listed["items"][0]
    one = client.get(f"/api/v1/webhooks/{created['id']}", headers=headers).json()
    assert "secret" not in one
    assert one["url"] == receiver.url
    patched = client.patch(f"/api/v1/webhooks/{created['id']}", json={"include_machine": True}, headers=headers)
    assert patched.json()["secret"] is None
    assert patched.json()["include_machine"] is True


def test_every_webhook_route_is_the_owners_only(
    client: TestClient,
    headers: dict[str, str],
    other_headers: dict[str, str],
    admin_headers: dict[str, str],
    private_ok: Settings,
    receiver: Receiver,
) -> None:
    webhook_id = create(client, headers, receiver.url)["id"]
    base = f"/api/v1/webhooks/{webhook_id}"
    for who in (other_headers, admin_headers):
        assert_error(client.get(base, headers=who), 404, "not_found")
        assert_error(client.patch(base, json={"description": "x"}, headers=who), 404, "not_found")
        assert_error(client.post(f"{base}/test", headers=who), 404, "not_found")
        assert_error(client.get(f"{base}/deliveries", headers=who), 404, "not_found")
        assert_error(client.post(f"{base}/replay", params={"since": "2026-01-01T00:00:00Z"}, headers=who), 404)
        assert_error(client.delete(base, headers=who), 404, "not_found")
        assert client.get("/api/v1/webhooks", headers=who).json()["total"] == 0
    assert not receiver.requests
    assert client.get(base, headers=headers).status_code == 200


def test_a_webhook_on_someone_elses_campaign_is_a_404(
    client: TestClient, db: Session, headers: dict[str, str], other_user: User, private_ok: Settings
) -> None:
    theirs = factories.make_campaign(db, other_user)
    response = client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "campaign_id": theirs.id}, headers=headers
    )
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.1.2.3:8080/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://localhost:8000/hook",
        "http://user:pw@example.com/hook",
    ],
)
def test_private_loopback_link_local_and_metadata_urls_are_refused(
    client: TestClient, headers: dict[str, str], url: str
) -> None:
    body = assert_error(client.post("/api/v1/webhooks", json={"url": url}, headers=headers), 422, "validation_error")
    assert body["detail"][0]["loc"] == ["body", "url"]
    assert count_webhooks(client, headers) == 0


def count_webhooks(client: TestClient, headers: dict[str, str]) -> int:
    total: int = client.get("/api/v1/webhooks", headers=headers).json()["total"]
    return total


def test_a_hostname_resolving_to_a_private_address_is_refused(client: TestClient, headers: dict[str, str]) -> None:
    resolved = [(2, 1, 6, "", ("10.1.2.3", 443))]
    with mock.patch("app.webhooks.ssrf.socket.getaddrinfo", return_value=resolved):
        response = client.post("/api/v1/webhooks", json={"url": "https://hooks.example.com/x"}, headers=headers)
    assert_error(response, 422, "validation_error")
    public = [(2, 1, 6, "", ("93.184.215.14", 443))]
    with mock.patch("app.webhooks.ssrf.socket.getaddrinfo", return_value=public):
        assert (
            client.post("/api/v1/webhooks", json={"url": "https://hooks.example.com/x"}, headers=headers).status_code
            == 201
        )


def test_addresses_are_checked_again_at_delivery(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    """DNS rebinding: a receiver accepted at creation that now resolves to a private address gets nothing."""
    with running_receiver() as receiver:
        webhook_id = create(client, headers, receiver.url)["id"]
        tree = consent_tree(db, user)
        ingest(engine, *opens(tree))
        with dispatching(engine, private_ok.model_copy(update={"webhook_allow_private": False})):
            wait_deliveries(client, headers, webhook_id, 1)
        assert receiver.requests == []
    log = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=headers).json()["items"]
    assert log[0]["outcome"] == "retry"
    assert log[0]["error"].startswith("refused:")


def test_ssrf_module_refuses_every_non_public_family() -> None:
    for host in ("127.0.0.1", "10.9.8.7", "172.16.0.1", "100.64.0.1", "169.254.169.254", "::1", "fd00::1", "ff02::1"):
        with pytest.raises(ssrf.UnsafeUrl):
            ssrf.resolve(host, 80, allow_private=False)
    assert ssrf.resolve("127.0.0.1", 80, allow_private=True) == "127.0.0.1"
    with pytest.raises(ssrf.UnsafeUrl):
        ssrf.check("ftp://example.com/", allow_private=True)


def wait_deliveries(
    client: TestClient, headers: dict[str, str], webhook_id: int, n: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Poll the deliveries log (with a deadline) until it holds `n` attempts."""
    deadline = time.monotonic() + timeout
    while True:
        items: list[dict[str, Any]] = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=headers).json()[
            "items"
        ]
        if len(items) >= n:
            return items
        assert time.monotonic() < deadline, f"{len(items)} deliveries logged, {n} expected"
        threading.Event().wait(0.02)


# Delivery.


def test_events_are_delivered_signed_with_the_consent_rules(
    client: TestClient,
    db: Session,
    engine: Engine,
    user: User,
    headers: dict[str, str],
    private_ok: Settings,
    receiver: Receiver,
) -> None:
    created = create(client, headers, receiver.url, include_machine=True)
    tree = consent_tree(db, user)
    ids = ingest(
        engine,
        *opens(tree, "full"),
        *opens(tree, "anonymous"),
        *opens(tree, "off"),
        click(tree, "full"),
        click(tree, "anonymous"),
        *opens(tree, "full", client="apple_mpp"),
    )
    with dispatching(engine, private_ok):
        receiver.wait_for(lambda r: len(r.events()) >= 5)
    for request in receiver.requests:
        payload = request.verify(created["secret"])
        assert payload["type"] == "events"
        assert request.headers["webhook-id"].startswith("msg_")
        assert request.headers["user-agent"].startswith("PixelTracking-Webhooks/")
        assert request.headers["content-type"] == "application/json"
    events = {e["id"]: e for e in receiver.events()}
    off_id = ids[2]
    assert set(events) == set(ids) - {off_id}, "every stored event once; nothing for an `off` contact"
    full_open, anon_open, full_click, anon_click, machine_open = (
        events[i] for i in (ids[0], ids[1], ids[3], ids[4], ids[5])
    )
    contact = tree["contacts"]["full"]
    assert full_open == {
        "id": ids[0],
        "type": "open",
        "occurred_at": full_open["occurred_at"],
        "campaign_id": tree["campaign"].id,
        "group_id": tree["group"].id,
        "contact_id": contact.id,
        "email": contact.email,
        "pixel_id": tree["pixels"]["full"].id,
        "client": "browser",
        "machine": False,
        "reason": "",
    }
    assert set(anon_open) == {"id", "type", "occurred_at", "campaign_id", "group_id", "client", "machine", "reason"}
    assert full_click["link_id"] == tree["link"].id
    assert full_click["url"] == "https://shop.example.com/spring"
    assert full_click["email"] == contact.email
    assert set(anon_click) == {
        "id",
        "type",
        "occurred_at",
        "campaign_id",
        "group_id",
        "client",
        "machine",
        "reason",
        "link_id",
        "url",
    }
    assert machine_open["machine"] is True
    datetime.fromisoformat(full_open["occurred_at"])


def test_filters_types_campaign_and_machines(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    tree, other_tree = consent_tree(db, user), consent_tree(db, user)
    with running_receiver() as everything, running_receiver() as clicks_here:
        create(client, headers, everything.url)
        create(client, headers, clicks_here.url, events=["click"], campaign_id=tree["campaign"].id)
        ids = ingest(engine, *opens(tree), click(tree), click(other_tree), click(tree, client="scanner"))
        with dispatching(engine, private_ok):
            everything.wait_for(lambda r: len(r.events()) >= 3)
            clicks_here.wait_for(lambda r: len(r.events()) >= 1)
        assert {e["id"] for e in everything.events()} == set(ids[:3]), "machines only with include_machine"
        assert [e["id"] for e in clicks_here.events()] == [ids[1]]


def test_a_failing_receiver_is_retried_with_the_same_webhook_id_until_it_answers(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    with running_receiver(fail_first=3) as receiver:
        created = create(client, headers, receiver.url)
        tree = consent_tree(db, user)
        ids = ingest(engine, *opens(tree, n=3))
        with dispatching(engine, private_ok):
            receiver.wait_for(lambda r: len(r.events()) == 3)
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
        assert next(r.verify(created["secret"])["data"] for r in receiver.requests) == receiver.events()
        assert {e["id"] for e in receiver.events()} == set(ids)
    log = wait_deliveries(client, headers, created["id"], 4)
    assert [d["outcome"] for d in reversed(log)] == ["retry", "retry", "retry", "delivered"]
    assert [d["attempt"] for d in reversed(log)] == [1, 2, 3, 4]
    assert [d["status_code"] for d in reversed(log)] == [500, 500, 500, 200]
    assert {d["event_count"] for d in log} == {3}


def test_retries_end_after_the_retry_window_and_replay_sends_again(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    with running_receiver(fail_first=1000) as receiver:
        created = create(client, headers, receiver.url)
        tree = consent_tree(db, user)
        since = datetime.now(UTC) - timedelta(seconds=1)
        ids = ingest(engine, *opens(tree, n=2))
        with dispatching(engine, hook_settings(private_ok, webhook_retry_hours=0.0005), backoff_base=0.2):
            wait_until_batch(engine, "failed")
        receiver.fail_first = 0
        replayed = client.post(
            f"/api/v1/webhooks/{created['id']}/replay", params={"since": since.isoformat()}, headers=headers
        )
        assert replayed.status_code == 200
        assert replayed.json()["events"] == 2
        with dispatching(engine, private_ok):
            receiver.wait_for(lambda r: len(r.events()) == 2)
        assert {e["id"] for e in receiver.events()} == set(ids)
    outcomes = [
        d["outcome"]
        for d in client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=headers).json()["items"]
    ]
    assert outcomes[0] == "delivered"
    assert "failed" in outcomes


def wait_until_batch(
    engine: Engine, status: str, *, attempts: int = 0, retry_later: bool = False, timeout: float = 20.0
) -> None:
    """Poll (with a deadline) until a batch has this status (and at least `attempts`, and its
    next attempt is more than a minute away: its failure recorded, not just leased)."""
    deadline = time.monotonic() + timeout
    while True:
        stmt = select(WebhookBatch.id).where(WebhookBatch.status == status, WebhookBatch.attempts >= attempts)
        if retry_later:
            stmt = stmt.where(WebhookBatch.next_attempt_at > datetime.now(UTC) + timedelta(minutes=1))
        with Session(engine) as session:
            if session.scalar(stmt) is not None:
                return
        assert time.monotonic() < deadline, f"no batch became {status}"
        threading.Event().wait(0.02)


def test_410_gone_disables_the_webhook(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    with running_receiver(status=410) as receiver:
        created = create(client, headers, receiver.url)
        ingest(engine, *opens(consent_tree(db, user)))
        with dispatching(engine, private_ok):
            wait_deliveries(client, headers, created["id"], 1)
    one = client.get(f"/api/v1/webhooks/{created['id']}", headers=headers).json()
    assert one["enabled"] is False
    assert "410" in one["disabled_reason"]
    assert (
        client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=headers).json()["items"][0]["outcome"]
        == "gone"
    )
    again = client.patch(f"/api/v1/webhooks/{created['id']}", json={"enabled": True}, headers=headers).json()
    assert again["enabled"] is True
    assert again["disabled_reason"] is None


def test_a_slow_receiver_does_not_delay_another_webhook(
    client: TestClient,
    db: Session,
    engine: Engine,
    user: User,
    other_user: User,
    headers: dict[str, str],
    other_headers: dict[str, str],
    private_ok: Settings,
) -> None:
    hold = threading.Event()
    with running_receiver(hold=hold) as slow, running_receiver() as fast:
        create(client, headers, slow.url)
        create(client, other_headers, fast.url)
        slow_ids = ingest(engine, *opens(consent_tree(db, user)))
        with dispatching(engine, private_ok):
            slow.wait_for(lambda r: r.arrived == 1)  # in flight, held
            fast_ids = ingest(engine, *opens(consent_tree(db, other_user), n=2))
            fast.wait_for(lambda r: len(r.events()) == 2)
            assert slow.events() == [], "the slow receiver is still holding its answer"
            hold.set()
            slow.wait_for(lambda r: len(r.events()) == 1)
        assert [e["id"] for e in slow.events()] == slow_ids
        assert {e["id"] for e in fast.events()} == set(fast_ids), "tenants never see each other's events"


def test_rotation_signs_with_both_secrets_for_a_day(
    client: TestClient,
    db: Session,
    engine: Engine,
    user: User,
    headers: dict[str, str],
    private_ok: Settings,
    receiver: Receiver,
) -> None:
    created = create(client, headers, receiver.url)
    rotated = client.patch(f"/api/v1/webhooks/{created['id']}", json={"rotate_secret": True}, headers=headers).json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    until = datetime.fromisoformat(rotated["old_secret_until"])
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(hours=24)
    ingest(engine, *opens(consent_tree(db, user)))
    with dispatching(engine, private_ok):
        receiver.wait_for(lambda r: len(r.events()) == 1)
    request = receiver.requests[0]
    assert request.verify(created["secret"]) == request.verify(rotated["secret"])
    assert len(request.headers["webhook-signature"].split(" ")) == 2


def test_test_sends_a_signed_ping(
    client: TestClient, headers: dict[str, str], private_ok: Settings, receiver: Receiver
) -> None:
    created = create(client, headers, receiver.url)
    answer = client.post(f"/api/v1/webhooks/{created['id']}/test", headers=headers).json()
    assert answer["ok"] is True
    assert answer["status_code"] == 200
    (event,) = receiver.requests[0].verify(created["secret"])["data"]
    assert event["type"] == "ping"
    (logged,) = client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=headers).json()["items"]
    assert logged["outcome"] == "ping"
    assert logged["status_code"] == 200


def test_erasing_a_contact_drops_its_undelivered_events(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    with running_receiver(fail_first=1) as receiver:
        create(client, headers, receiver.url)
        tree = consent_tree(db, user)
        ids = ingest(engine, *opens(tree, "full"), *opens(tree, "anonymous"))
        with dispatching(engine, private_ok, backoff_base=3600):
            wait_until_batch(engine, "pending", attempts=1, retry_later=True)
            first = receiver.requests[0].json()["data"]
            assert {e["id"] for e in first} == set(ids)
            gone = client.delete(f"/api/v1/contacts/{tree['contacts']['full'].id}", headers=headers)
            assert gone.status_code == 204
            with engine.begin() as conn:  # the retry is due now
                conn.execute(update(WebhookBatch).values(next_attempt_at=datetime.now(UTC)))
            receiver.wait_for(lambda r: len(r.events()) >= 1)
        assert [e["id"] for e in receiver.events()] == [ids[1]], "the erased contact's event is not sent again"
    with Session(engine) as session:
        assert count(session, Webhook) == 1


def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt_retried(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    hold = threading.Event()
    with running_receiver(hold=hold) as receiver:
        created = create(client, headers, receiver.url)
        ids = ingest(engine, *opens(consent_tree(db, user)))
        with dispatching(engine, hook_settings(private_ok, webhook_timeout_seconds=0.3)):
            first = wait_deliveries(client, headers, created["id"], 1)
            assert first[0]["outcome"] == "retry"
            assert first[0]["error"] == "timeout after 0.3 s"
            assert first[0]["status_code"] is None
            hold.set()  # the receiver answers at once from now on
            receiver.wait_for(lambda r: any(e["id"] == ids[0] for e in r.events()))
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_redirects_are_not_followed(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    with running_receiver(status=307) as redirecting, running_receiver() as elsewhere:
        redirecting.location = elsewhere.url
        created = create(client, headers, redirecting.url)
        ingest(engine, *opens(consent_tree(db, user)))
        with dispatching(engine, private_ok, backoff_base=3600):
            (logged,) = wait_deliveries(client, headers, created["id"], 1)
        assert elsewhere.requests == []
    assert logged["outcome"] == "retry"
    assert logged["status_code"] == 307
