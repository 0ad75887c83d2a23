"""`POST /api/v1/conversions` (docs/conversions.md, "Backend API"): one conversion or a batch of
up to 10,000, by attribution token or contact id, owner-scoped, all or nothing, idempotent on
the order id, consent applied; the answer counts received / recorded / duplicates / skipped."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Contact, Conversion, Tracking, User
from app.tracking.attribution import Attribution, AttributionCodec
from app.tracking.events import new_event_id
from tests import factories
from tests.helpers import assert_error, count
from tests.support.app_state import app_state

URL = "/api/v1/conversions"


def _codec(client: TestClient) -> AttributionCodec:
    codec: AttributionCodec = app_state(client).tracker.attribution.codec
    return codec


def _token(client: TestClient, contact: Contact, *, anonymous: bool = False, issued_at: int | None = None) -> str:
    return _codec(client).seal(
        Attribution(
            campaign_id=contact.campaign_id,
            group_id=contact.group_id,
            contact_id=0 if anonymous else contact.id,
            link_id=7,
            click_event_id=new_event_id(),
            issued_at=int(time.time()) if issued_at is None else issued_at,
        )
    )


def _post(client: TestClient, headers: dict[str, str], body: Any, status: int = 200) -> dict[str, Any]:
    response = client.post(URL, json=body, headers=headers)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


def _rows(db: Session) -> list[Conversion]:
    db.commit()  # a fresh snapshot (MariaDB: REPEATABLE READ)
    return list(db.scalars(select(Conversion).order_by(Conversion.id)))


def test_one_by_token_and_one_by_contact(
    client: TestClient, headers: dict[str, str], db: Session, tree: dict[str, Any]
) -> None:
    contact = tree["contact"]
    token = _token(client, contact)
    opened = _codec(client).open(token)
    assert opened is not None
    by_token = {"token": token, "name": "purchase", "value": "42.50", "currency": "eur", "id": "order-1"}
    assert _post(client, headers, by_token) == {"received": 1, "recorded": 1, "duplicates": 0, "skipped": 0}
    at = "2026-01-02T03:04:05+01:00"
    assert _post(client, headers, {"contact_id": contact.id, "name": "signup", "occurred_at": at})["recorded"] == 1
    first, second = _rows(db)
    assert (first.campaign_id, first.group_id, first.contact_id) == (contact.campaign_id, contact.group_id, contact.id)
    assert (first.name, first.value, first.currency, first.order_id, first.source) == (
        "purchase",
        Decimal("42.5"),
        "EUR",
        "order-1",
        "api",
    )
    assert (first.link_id, first.click_event_id) == (7, opened.click_event_id)
    assert (second.name, second.contact_id, second.link_id, second.order_id) == ("signup", contact.id, None, None)
    assert second.occurred_at.astimezone(UTC) == datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)


def test_the_same_order_id_counts_once(
    client: TestClient, headers: dict[str, str], db: Session, tree: dict[str, Any]
) -> None:
    contact = tree["contact"]
    order = {"name": "purchase", "value": "10", "currency": "USD", "id": "A-1"}
    batch = {"conversions": [{"contact_id": contact.id, **order}, {"token": _token(client, contact), **order}]}
    assert _post(client, headers, batch) == {"received": 2, "recorded": 1, "duplicates": 1, "skipped": 0}
    again = {"token": _token(client, contact), **order}
    assert _post(client, headers, again) == {"received": 1, "recorded": 0, "duplicates": 1, "skipped": 0}
    without_id = {"contact_id": contact.id, "name": "visit"}
    assert _post(client, headers, {"conversions": [without_id, without_id]})["recorded"] == 2  # no id: each counts
    assert len(_rows(db)) == 3


def test_bulk_of_ten_thousand(client: TestClient, headers: dict[str, str], db: Session, user: User) -> None:
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    with factories.one_commit(db):
        contacts = [factories.make_contact(db, group) for _ in range(50)]
    rows = [
        {"contact_id": contacts[i % 50].id, "name": "purchase", "value": f"{i}.5", "currency": "EUR", "id": f"o-{i}"}
        for i in range(10_000)
    ]
    result = _post(client, headers, {"conversions": rows})
    assert result == {"received": 10_000, "recorded": 10_000, "duplicates": 0, "skipped": 0}
    assert count(db, Conversion, campaign_id=campaign.id) == 10_000
    too_many = {"conversions": rows + rows[:1]}
    body = assert_error(client.post(URL, json=too_many, headers=headers), 422, "validation_error")
    assert body["detail"][0]["loc"] == ["body", "conversions"]


def test_consent_off_is_skipped_anonymous_names_no_one(
    client: TestClient, headers: dict[str, str], db: Session, user: User
) -> None:
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    off = factories.make_contact(db, group, tracking=Tracking.off.value)
    anonymous = factories.make_contact(db, group, tracking=Tracking.anonymous.value)
    gone = factories.make_contact(db, group)
    gone_token = _token(client, gone)
    db.delete(gone)
    db.commit()
    batch = {
        "conversions": [
            {"contact_id": off.id, "name": "purchase"},
            {"token": _token(client, off), "name": "purchase"},
            {"token": gone_token, "name": "purchase"},  # a genuine token whose contact is gone: skipped
            {"contact_id": anonymous.id, "name": "purchase", "id": "x"},
            {"token": _token(client, anonymous, anonymous=True), "name": "purchase", "id": "y"},
        ]
    }
    assert _post(client, headers, batch) == {"received": 5, "recorded": 2, "duplicates": 0, "skipped": 3}
    rows = _rows(db)
    assert [(r.contact_id, r.group_id, r.order_id) for r in rows] == [(None, group.id, "x"), (None, group.id, "y")]


def test_invalid_and_foreign_references_are_404_and_nothing_is_stored(
    client: TestClient,
    headers: dict[str, str],
    db: Session,
    tree: dict[str, Any],
    other_user: User,
) -> None:
    mine = tree["contact"]
    theirs = factories.make_tree(db, other_user)["contact"]
    good = _token(client, mine)
    forged = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    expired = _token(client, mine, issued_at=int(time.time()) - 91 * 86_400)
    future = _token(client, mine, issued_at=int(time.time()) + 3600)
    batch = {
        "conversions": [
            {"token": good, "name": "ok"},
            {"token": forged, "name": "a"},
            {"token": _token(client, theirs), "name": "b"},  # another tenant's campaign
            {"contact_id": theirs.id, "name": "c"},
            {"contact_id": 9_000_000_000, "name": "d"},
            {"token": expired, "name": "e"},
            {"token": future, "name": "f"},
            {"token": "not-a-token", "name": "g"},
            {"contact_id": mine.id, "name": "ok"},
        ]
    }
    body = assert_error(client.post(URL, json=batch, headers=headers), 404, "not_found")
    assert [item["loc"] for item in body["detail"]] == [
        ["body", "conversions", 1, "token"],
        ["body", "conversions", 2, "token"],
        ["body", "conversions", 3, "contact_id"],
        ["body", "conversions", 4, "contact_id"],
        ["body", "conversions", 5, "token"],
        ["body", "conversions", 6, "token"],
        ["body", "conversions", 7, "token"],
    ]
    single = assert_error(client.post(URL, json={"contact_id": theirs.id, "name": "x"}, headers=headers), 404)
    assert single["detail"][0]["loc"] == ["body", "contact_id"]
    assert _rows(db) == []


def test_admin_may_post_for_any_campaign(
    client: TestClient, admin_headers: dict[str, str], db: Session, tree: dict[str, Any]
) -> None:
    assert _post(client, admin_headers, {"token": _token(client, tree["contact"]), "name": "x"})["recorded"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"name": "purchase"},  # neither token nor contact_id
        {"token": "t", "contact_id": 1, "name": "purchase"},  # both
        {"token": None, "contact_id": 1, "name": "purchase"},  # never null
        {"contact_id": None, "name": "purchase"},
        {"contact_id": 1},  # no name
        {"contact_id": 1, "name": ""},
        {"contact_id": 1, "name": "purchase", "value": "10"},  # a value without its currency
        {"contact_id": 1, "name": "purchase", "value": "10", "currency": "XXQ"},
        {"contact_id": 1, "name": "purchase", "value": "-1", "currency": "EUR"},
        {"contact_id": 1, "name": "purchase", "value": "1.00001", "currency": "EUR"},
        {"contact_id": 1, "name": "purchase", "value": "NaN", "currency": "EUR"},
        {"contact_id": "1", "name": "purchase"},
        {"contact_id": True, "name": "purchase"},
        {"contact_id": 0, "name": "purchase"},
        {"contact_id": 1, "name": "purchase", "id": "has space"},
        {"contact_id": 1, "name": "purchase", "occurred_at": "2999-01-01T00:00:00Z"},
        {"contact_id": 1, "name": "purchase", "occurred_at": 1700000000},
        {"contact_id": 1, "name": "purchase", "extra": 1},
        {"token": "x" * 200, "name": "purchase"},
        {"conversions": []},
        {"conversions": {}},
        {"conversions": [{"contact_id": 1, "name": "ok"}], "name": "x"},
        {"conversions": [{"contact_id": 1, "name": "ok"}, {"contact_id": 1}]},
    ],
)
def test_invalid_bodies_are_422(
    client: TestClient, headers: dict[str, str], db: Session, tree: dict[str, Any], body: dict[str, Any]
) -> None:
    assert_error(client.post(URL, json=body, headers=headers), 422, "validation_error")
    assert _rows(db) == []


def test_batch_errors_locate_the_row(client: TestClient, headers: dict[str, str], tree: dict[str, Any]) -> None:
    rows = [{"contact_id": tree["contact"].id, "name": "ok"}] * 1500 + [{"contact_id": 1, "name": "bad name!"}]
    body = assert_error(client.post(URL, json={"conversions": rows}, headers=headers), 422)
    assert body["detail"][0]["loc"] == ["body", "conversions", 1500, "name"]


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"contact_id": 1, "name": ', "application/json"),
        (b"[]", "application/json"),
        (b'"x"', "application/json"),
        (b'{"contact_id": 1, "name": "x"}', "text/plain"),
    ],
)
def test_malformed_bodies_are_422(client: TestClient, headers: dict[str, str], raw: bytes, content_type: str) -> None:
    response = client.post(URL, content=raw, headers={**headers, "Content-Type": content_type})
    assert_error(response, 422, "validation_error")


def test_oversized_body_is_413(client: TestClient, headers: dict[str, str]) -> None:
    raw = json.dumps({"conversions": [{"contact_id": 1, "name": "x" * 60}] * 120_000}).encode()
    assert_error(client.post(URL, content=raw, headers={**headers, "Content-Type": "application/json"}), 413)


def test_requires_authentication(client: TestClient) -> None:
    assert_error(client.post(URL, json={"contact_id": 1, "name": "x"}), 401)


def test_occurred_at_may_be_slightly_ahead(client: TestClient, headers: dict[str, str], tree: dict[str, Any]) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    assert _post(client, headers, {"contact_id": tree["contact"].id, "name": "x", "occurred_at": soon})["recorded"] == 1
