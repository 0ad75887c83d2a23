"""Per-contact tracking consent (docs/consent.md) end to end: the API fields, the ingest (the
in-process queue and the Redis worker), what is listed and exported, and the erasure of IPs and
user agents when consent is withdrawn."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.clients import sync_redis
from app.db import make_sessionmaker
from app.main import create_asgi
from app.models import Campaign, Click, Contact, Opening, User
from app.services.reclassify import reclassify
from app.settings import Settings
from app.tracking.classify import classify
from app.tracking.events import OPEN, Event
from app.tracking.ingest import store_events
from app.tracking.worker import StreamWorker
from tests import factories
from tests.helpers import assert_error, count
from tests.support.app_state import app_state, flush_memory
from tests.support.reports import stats

BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)
IP = "203.0.113.7"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def embedded(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The whole app (tracking fast path included) on the in-process queue, its own per test."""
    with TestClient(create_asgi(settings), client=(IP, 50000)) as client:
        yield client


@pytest.fixture
def people(db: Session, user: User) -> dict[str, Any]:
    """One campaign, one group, a contact per consent level, each with a pixel; one link."""
    with factories.one_commit(db):
        campaign = factories.make_campaign(db, user)
        group = factories.make_group(db, campaign)
        made = {level: factories.make_contact(db, group, tracking=level) for level in ("full", "anonymous", "off")}
        pixels = {level: factories.make_pixel(db, contact) for level, contact in made.items()}
        link = factories.make_link(db, campaign)
    return {"campaign": campaign, "group": group, "contacts": made, "pixels": pixels, "link": link}


def skipped_consent() -> float:
    return REGISTRY.get_sample_value("pixeltrack_events_skipped_total", {"kind": "event", "reason": "consent"}) or 0.0


def load_everything(client: TestClient, people: dict[str, Any]) -> None:
    """Each contact loads its pixel and follows the link, in a browser; the URLs all answer."""
    tracker = app_state(client).tracker
    for level, contact in people["contacts"].items():
        pixel = client.get(f"/o/{tracker.codec.pixel_token(people['pixels'][level].id)}.gif", headers=_browser())
        assert pixel.status_code == 200
        assert pixel.headers["content-type"] == "image/gif"
        click = client.get(
            f"/c/{tracker.codec.click_token(people['link'].id, contact.id)}", headers=_browser(), follow_redirects=False
        )
        assert click.status_code == 302
        assert click.headers["location"] == people["link"].url


def _browser() -> dict[str, str]:
    return {"User-Agent": BROWSER_UA}


def rows_of(db: Session, model: Any, contact: Contact) -> list[tuple[Any, ...]]:
    db.commit()
    return [
        (row.ip, row.user_agent, row.client)
        for row in db.scalars(select(model).where(model.contact_id == contact.id).order_by(model.id))
    ]


def read_csv(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.text
    return list(csv.reader(io.StringIO(response.text, newline="")))


# --- the API fields ------------------------------------------------------------------------


def test_consent_on_create_from_the_campaign_default_and_on_patch(
    client: TestClient, db: Session, headers: dict[str, str]
) -> None:
    created = client.post(
        "/api/v1/campaigns", json={"name": "Consent", "tracking_default": "anonymous"}, headers=headers
    )
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert campaign["tracking_default"] == "anonymous"
    group = client.post(f"/api/v1/campaigns/{campaign['id']}/groups", json={"name": "A"}, headers=headers).json()
    url = f"/api/v1/groups/{group['id']}/contacts"
    one = client.post(url, json={"email": "one@example.com"}, headers=headers).json()
    assert one["tracking"] == "anonymous"
    bulk = client.post(
        url, json=[{"email": "two@example.com", "tracking": "full"}, {"email": "three@example.com"}], headers=headers
    ).json()
    assert [item["tracking"] for item in bulk["items"]] == ["full", "anonymous"]
    patched = client.patch(f"/api/v1/campaigns/{campaign['id']}", json={"tracking_default": "off"}, headers=headers)
    assert patched.json()["tracking_default"] == "off"
    assert client.post(url, json={"email": "four@example.com"}, headers=headers).json()["tracking"] == "off"
    assert client.get(f"/api/v1/contacts/{one['id']}", headers=headers).json()["tracking"] == "anonymous"  # kept
    changed = client.patch(f"/api/v1/contacts/{one['id']}", json={"tracking": "full"}, headers=headers)
    assert changed.json()["tracking"] == "full"
    assert db.scalar(select(Contact.tracking).where(Contact.id == one["id"])) == "full"
    assert (
        client.post("/api/v1/campaigns", json={"name": "Default"}, headers=headers).json()["tracking_default"] == "full"
    )


def test_invalid_consent_values_are_422(client: TestClient, headers: dict[str, str], people: dict[str, Any]) -> None:
    campaign, group = people["campaign"], people["group"]
    contact = people["contacts"]["full"]
    cases = [
        (client.post, "/api/v1/campaigns", {"name": "x", "tracking_default": "maybe"}, ["body", "tracking_default"]),
        (client.patch, f"/api/v1/campaigns/{campaign.id}", {"tracking_default": None}, ["body"]),
        (client.patch, f"/api/v1/campaigns/{campaign.id}", {"tracking_default": "none"}, ["body", "tracking_default"]),
        (client.post, f"/api/v1/groups/{group.id}/contacts", {"email": "a@example.com", "tracking": "yes"}, None),
        (client.post, f"/api/v1/groups/{group.id}/contacts", [{"email": "b@example.com", "tracking": 1}], None),
        (client.patch, f"/api/v1/contacts/{contact.id}", {"tracking": "FULL"}, ["body", "tracking"]),
        (client.patch, f"/api/v1/contacts/{contact.id}", {"tracking": None}, ["body"]),
    ]
    for method, url, body, loc in cases:
        detail = assert_error(method(url, json=body, headers=headers), 422, "validation_error")["detail"]
        if loc is not None:
            assert loc in [item["loc"] for item in detail], (url, body, detail)


# --- the ingest ----------------------------------------------------------------------------


def test_off_records_nothing_anonymous_no_ip_or_user_agent(
    embedded: TestClient, db: Session, headers: dict[str, str], people: dict[str, Any]
) -> None:
    before = skipped_consent()
    load_everything(embedded, people)
    flush_memory(embedded)
    result = app_state(embedded).tracking.memory.totals  # (the background flusher may have run first)
    assert (result.inserted, result.skipped_consent, result.skipped_missing) == (4, 2, 0)
    assert skipped_consent() - before == 2
    full, anonymous, off = (people["contacts"][level] for level in ("full", "anonymous", "off"))
    assert rows_of(db, Opening, full) == [(IP, BROWSER_UA, "browser")]
    assert rows_of(db, Click, full) == [(IP, BROWSER_UA, "browser")]
    # Classified from the user agent, which is then dropped.
    assert rows_of(db, Opening, anonymous) == [(None, None, "browser")]
    assert rows_of(db, Click, anonymous) == [(None, None, "browser")]
    assert rows_of(db, Opening, off) == []
    assert rows_of(db, Click, off) == []
    # Counted in the aggregates: both recorded contacts.
    body = stats(embedded, people["campaign"].id, headers)
    assert (body["total_opens"], body["human_opens"], body["unique_opens"]) == (2, 2, 2)
    assert (body["clicks"], body["human_clicks"], body["unique_clicks"]) == (2, 2, 2)
    series = stats(embedded, people["campaign"].id, headers, bucket="day")["series"]
    assert sum(bucket["opens"] for bucket in series) == 2


def test_store_events_applies_consent(engine: Engine, db: Session, people: dict[str, Any]) -> None:
    pixels = people["pixels"]
    events = [
        (f"e-{level}-{n}", Event(OPEN, pixels[level].id, 0, 1_772_438_400_000 + n, "", IP, BROWSER_UA))
        for level in ("full", "anonymous", "off")
        for n in range(2)
    ]
    result = store_events(engine, events)
    assert (result.inserted, result.skipped_consent, result.skipped_missing) == (4, 2, 0)
    assert count(db, Opening, Opening.user_agent.is_(None)) == 2
    assert count(db, Opening, contact_id=people["contacts"]["off"].id) == 0


def test_the_redis_worker_skips_off_contacts(
    settings: Settings, engine: Engine, redis_client: Any, redis_url: str, db: Session, people: dict[str, Any]
) -> None:
    with TestClient(create_asgi(settings.model_copy(update={"redis_url": redis_url})), client=(IP, 50000)) as client:
        load_everything(client, people)
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="consent-worker", block_ms=10)
    assert worker.drain() == 6
    assert (worker.stats.inserted, worker.stats.skipped_consent) == (4, 2)
    assert rows_of(db, Opening, people["contacts"]["anonymous"]) == [(None, None, "browser")]
    assert rows_of(db, Opening, people["contacts"]["off"]) == []


# --- what is listed and exported -------------------------------------------------------------


def test_only_full_contacts_are_listed_or_exported(
    client: TestClient, db: Session, headers: dict[str, str], people: dict[str, Any]
) -> None:
    full, anonymous = people["contacts"]["full"], people["contacts"]["anonymous"]
    with factories.one_commit(db):
        openings = {
            level: factories.make_opening(db, people["pixels"][level], client="browser", opened_at=T0)
            for level in ("full", "anonymous")
        }
        for contact in (full, anonymous):
            factories.make_click(db, people["link"], contact, client="browser", clicked_at=T0)
    listed = client.get(f"/api/v1/pixels/{people['pixels']['full'].id}/openings", headers=headers).json()
    assert [item["id"] for item in listed["items"]] == [openings["full"].id]
    hidden = client.get(f"/api/v1/pixels/{people['pixels']['anonymous'].id}/openings", headers=headers).json()
    assert (hidden["items"], hidden["total"]) == ([], 0)
    assert client.get(f"/api/v1/openings/{openings['full'].id}", headers=headers).status_code == 200
    for method in (client.get, client.delete):
        assert_error(method(f"/api/v1/openings/{openings['anonymous'].id}", headers=headers), 404, "not_found")
    patched = client.patch(f"/api/v1/openings/{openings['anonymous'].id}", json={"client": "bot"}, headers=headers)
    assert_error(patched, 404, "not_found")
    campaign_id = people["campaign"].id
    for name in ("openings", "clicks"):
        rows = read_csv(client.get(f"/api/v1/campaigns/{campaign_id}/{name}.csv", headers=headers))
        contact_ids = [row[rows[0].index("contact_id")] for row in rows[1:]]
        assert contact_ids == [str(full.id)], name
        assert anonymous.email not in "".join(",".join(row) for row in rows)
    # The aggregates still count both.
    body = stats(client, campaign_id, headers)
    assert (body["total_opens"], body["clicks"]) == (2, 2)


def test_manual_openings_follow_consent(
    client: TestClient, db: Session, headers: dict[str, str], people: dict[str, Any]
) -> None:
    body = {"ip": IP, "user_agent": BROWSER_UA, "client": "browser"}
    off = client.post(f"/api/v1/pixels/{people['pixels']['off'].id}/openings", json=body, headers=headers)
    assert assert_error(off, 409, "tracking_off")["detail"][0]["loc"] == ["path", "pixel_id"]
    assert count(db, Opening, contact_id=people["contacts"]["off"].id) == 0
    anonymous = client.post(f"/api/v1/pixels/{people['pixels']['anonymous'].id}/openings", json=body, headers=headers)
    assert anonymous.status_code == 201, anonymous.text
    assert (anonymous.json()["ip"], anonymous.json()["user_agent"]) == (None, None)
    assert rows_of(db, Opening, people["contacts"]["anonymous"]) == [(None, None, "browser")]
    assert stats(client, people["campaign"].id, headers)["total_opens"] == 1


# --- withdrawn consent ------------------------------------------------------------------------


def _identified_history(db: Session, people: dict[str, Any]) -> None:
    """Openings and clicks with IP and user agent for the full contact (and for a second full
    contact, who keeps them)."""
    full = people["contacts"]["full"]
    with factories.one_commit(db):
        other = factories.make_contact(db, people["group"])
        people["other"] = other
        other_pixel = factories.make_pixel(db, other)
        for n in range(2):
            at = T0 + timedelta(minutes=n)
            factories.make_opening(db, people["pixels"]["full"], ip=IP, user_agent=BROWSER_UA, opened_at=at)
            factories.make_click(db, people["link"], full, ip=IP, user_agent=BROWSER_UA, clicked_at=at)
        factories.make_opening(db, other_pixel, ip=IP, user_agent=BROWSER_UA, opened_at=T0)
        factories.make_click(db, people["link"], other, ip=IP, user_agent=BROWSER_UA, clicked_at=T0)


@pytest.mark.parametrize("level", ["anonymous", "off"])
def test_withdrawing_consent_erases_ip_and_user_agent(
    client: TestClient, db: Session, headers: dict[str, str], people: dict[str, Any], level: str
) -> None:
    _identified_history(db, people)
    full, other = people["contacts"]["full"], people["other"]
    before = stats(client, people["campaign"].id, headers)
    response = client.patch(f"/api/v1/contacts/{full.id}", json={"tracking": level}, headers=headers)
    assert response.status_code == 200, response.text
    assert rows_of(db, Opening, full) == [(None, None, "unknown")] * 2
    assert rows_of(db, Click, full) == [(None, None, "unknown")] * 2
    assert rows_of(db, Opening, other) == [(IP, BROWSER_UA, "unknown")]  # someone else's: kept
    assert rows_of(db, Click, other) == [(IP, BROWSER_UA, "unknown")]
    assert stats(client, people["campaign"].id, headers) == before  # still counted
    # Back to full: nothing comes back.
    assert client.patch(f"/api/v1/contacts/{full.id}", json={"tracking": "full"}, headers=headers).status_code == 200
    assert rows_of(db, Opening, full) == [(None, None, "unknown")] * 2


def test_bulk_withdrawal_erases_and_a_failed_one_erases_nothing(
    client: TestClient, db: Session, headers: dict[str, str], other_user: User, people: dict[str, Any]
) -> None:
    _identified_history(db, people)
    full, other = people["contacts"]["full"], people["other"]
    url = f"/api/v1/groups/{people['group'].id}/contacts"
    foreign = factories.make_tree(db, other_user)["contact"]
    refused = client.patch(url, json={"ids": [full.id, foreign.id], "tracking": "off"}, headers=headers)
    assert_error(refused, 404, "not_found")
    assert rows_of(db, Opening, full) == [(IP, BROWSER_UA, "unknown")] * 2  # all or nothing
    assert db.scalar(select(Contact.tracking).where(Contact.id == full.id)) == "full"
    done = client.patch(url, json={"ids": [full.id], "tracking": "anonymous", "status": "sent"}, headers=headers)
    assert done.json() == {"updated": 1}
    assert rows_of(db, Opening, full) == [(None, None, "unknown")] * 2
    assert rows_of(db, Click, full) == [(None, None, "unknown")] * 2
    assert rows_of(db, Opening, other) == [(IP, BROWSER_UA, "unknown")]


def test_reclassify_leaves_rows_without_consent_alone(engine: Engine, db: Session, people: dict[str, Any]) -> None:
    """An anonymous contact's rows have no IP or user agent to classify again: their class stays."""
    with factories.one_commit(db):
        rows = {
            level: factories.make_opening(db, people["pixels"][level], client="apple_mpp", reason="ip:apple")
            for level in ("full", "anonymous")
        }
    reclassify(make_sessionmaker(engine))
    db.commit()
    db.expire_all()
    again = {
        level: tuple(db.execute(select(Opening.client, Opening.reason).where(Opening.id == row.id)).one())
        for level, row in rows.items()
    }
    assert again["anonymous"] == ("apple_mpp", "ip:apple")
    verdict = classify(None, None)
    assert again["full"] == (verdict.client.value, verdict.reason)  # the control
    assert again["full"] != again["anonymous"]


def test_tenant_isolation_of_consent(client: TestClient, other_headers: dict[str, str], people: dict[str, Any]) -> None:
    contact = people["contacts"]["full"]
    assert_error(client.patch(f"/api/v1/contacts/{contact.id}", json={"tracking": "off"}, headers=other_headers), 404)
    url = f"/api/v1/groups/{people['group'].id}/contacts"
    assert_error(client.patch(url, json={"ids": [contact.id], "tracking": "off"}, headers=other_headers), 404)
    campaign: Campaign = people["campaign"]
    patched = client.patch(f"/api/v1/campaigns/{campaign.id}", json={"tracking_default": "off"}, headers=other_headers)
    assert_error(patched, 404)
