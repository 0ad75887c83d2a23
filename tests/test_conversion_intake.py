"""The public conversion intake (POST /e, its preflight, GET /e.gif, GET /t.js) on the embedded
queue: what is recorded, what is refused (and then nothing is), CORS by the campaign's origins.
Outcomes are read from the database after an explicit flush: no sleeps."""

from __future__ import annotations

import json
import string
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.main import create_asgi
from app.models import Tracking, User
from app.settings import Settings
from app.tracking import script
from app.tracking.attribution import AttributionCodec
from tests.support.app_state import flush_memory
from tests.support.conversions import SHOP, body, purchase, reload_origins, rows, shop, token

# Fixed windows (minutes): a clock that stands still, so no test straddles two (tests/support/clock.py).
pytestmark = pytest.mark.usefixtures("still_windows")

TEXT = {"content-type": "text/plain;charset=UTF-8", "origin": SHOP}


@pytest.fixture
def embedded(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_asgi(settings)) as client:
        yield client


def answered(result: str) -> float:
    labels = {"kind": "conversion", "first_pass": "none", "result": result}
    return REGISTRY.get_sample_value("pixeltrack_tracking_requests_total", labels) or 0.0


def inserted() -> float:
    return REGISTRY.get_sample_value("pixeltrack_events_inserted_total", {"kind": "conversion", "client": ""}) or 0.0


def post(client: TestClient, payload: Any, headers: dict[str, str] | None = None) -> Any:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post("/e", content=content, headers=TEXT if headers is None else headers)


def test_a_landing_page_records_one_conversion_per_order(
    embedded: TestClient, settings: Settings, db: Session, user: User
) -> None:
    tree = shop(db, user)
    reload_origins(embedded)
    pt = token(settings, tree)
    recorded, deduplicated, stored = answered("recorded"), answered("deduplicated"), inserted()
    first = post(embedded, body(pt))
    assert first.status_code == 204, first.text
    assert first.headers["access-control-allow-origin"] == SHOP
    assert first.headers["vary"] == "origin"
    again = post(embedded, body(pt), {"content-type": "application/json", "origin": SHOP})  # the reload
    assert again.status_code == 204
    assert (answered("recorded") - recorded, answered("deduplicated") - deduplicated) == (1, 1)
    flush_memory(embedded)
    assert rows(db) == [purchase(tree)]
    assert inserted() - stored == 1  # what the ingest stored, as for opens and clicks
    # Without an id each post counts; without a value, no currency.
    assert post(embedded, {"pt": pt, "name": "signup"}).status_code == 204
    assert post(embedded, {"pt": pt, "name": "signup"}).status_code == 204
    flush_memory(embedded)
    signups = [r for r in rows(db) if r[2] == "signup"]
    assert signups == [(tree["contact"].id, tree["group"].id, "signup", None, None, None, "browser")] * 2


def test_the_gif_records_too_and_needs_no_origin(
    embedded: TestClient, settings: Settings, db: Session, user: User
) -> None:
    tree = shop(db, user)
    reload_origins(embedded)
    pt = token(settings, tree)
    answer = embedded.get(
        "/e.gif", params={"pt": pt, "name": "purchase", "value": "42.5", "currency": "eur", "id": "o"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/gif"
    assert answer.content.startswith(b"GIF89a")
    assert embedded.get("/e.gif", params={"pt": pt, "name": "purchase", "value": "1"}).status_code == 422
    assert embedded.get("/e.gif", params={"pt": pt + "x", "name": "purchase"}).status_code == 404
    elsewhere = embedded.get("/e.gif", params={"pt": pt, "name": "x"}, headers={"origin": "https://evil.example"})
    assert elsewhere.status_code == 403
    assert embedded.head("/e.gif", params={"pt": pt, "name": "head"}).status_code == 405  # a scanner records nothing
    flush_memory(embedded)
    assert rows(db) == [purchase(tree, "o")]


def test_forged_expired_and_foreign_tokens_record_nothing(
    embedded: TestClient, settings: Settings, db: Session, user: User
) -> None:
    tree = shop(db, user)
    reload_origins(embedded)
    pt = token(settings, tree)
    flipped = pt[:10] + ("A" if pt[10] != "A" else "B") + pt[11:]
    other_key = AttributionCodec([Fernet.generate_key().decode()], lifetime_seconds=86400)
    foreign = other_key.seal(codec_attribution(settings, pt))
    expired = token(settings, tree, issued_at=int(time.time()) - settings.attribution_token_seconds() - 60)
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    unused_bits = pt[:-1] + alphabet[alphabet.index(pt[-1]) ^ 1]  # the same bytes, spelt otherwise
    before = answered("invalid_token")
    for bad in (flipped, foreign, expired, pt + "==", unused_bits, "not-a-token", "A" * 87, "x" * 3000, "", "é" * 10):
        answer = post(embedded, body(bad))
        assert answer.status_code == 404, bad
        assert answer.json() == {"detail": "Not found.", "code": "not_found"}
    assert answered("invalid_token") - before == 10
    flush_memory(embedded)
    assert rows(db) == []


def codec_attribution(settings: Settings, pt: str) -> Any:
    from tests.support.conversions import codec

    opened = codec(settings).open(pt)
    assert opened is not None
    return opened


def test_cors_only_for_the_tokens_campaign(
    embedded: TestClient, settings: Settings, db: Session, user: User, other_user: User
) -> None:
    mine = shop(db, user)
    theirs = shop(db, other_user, origins=["https://other.example"])
    reload_origins(embedded)
    # The preflight has no token: any campaign's origin is answered, others are not.
    for origin in (SHOP, "https://other.example"):
        ok = embedded.options("/e", headers={"origin": origin, "access-control-request-method": "POST"})
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == origin
        assert ok.headers["access-control-allow-methods"] == "POST"
        assert "content-type" in ok.headers["access-control-allow-headers"]
    refused = embedded.options(
        "/e", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    # The POST: only from the token's own campaign's origins (a cross-tenant page is refused).
    cross = post(embedded, body(token(settings, mine)), {**TEXT, "origin": "https://other.example"})
    assert cross.status_code == 403
    assert cross.json()["code"] == "forbidden"
    assert post(embedded, body(token(settings, theirs), id="t"), {**TEXT, "origin": SHOP}).status_code == 403
    evil = post(embedded, body(token(settings, mine)), {**TEXT, "origin": "https://evil.example"})
    assert evil.status_code == 403
    assert "access-control-allow-origin" not in evil.headers
    assert post(embedded, body(token(settings, mine)), {"content-type": "text/plain"}).status_code == 403  # no Origin
    flush_memory(embedded)
    assert rows(db) == []


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b"{",
        b'{"pt": "x"}',
        b"\xff\xfe{}",
        b"null",
        b"[" * 2000 + b"]" * 2000,
        {"name": "purchase"},
        {"pt": "PT", "name": "purchase", "value": 1},  # a value without its currency
        {"pt": "PT", "name": "purchase", "value": "1.5", "currency": "XXY"},
        {"pt": "PT", "name": "purchase", "value": 0.30000000000000004, "currency": "EUR"},
        {"pt": "PT", "name": "purchase", "value": -1, "currency": "EUR"},
        {"pt": "PT", "name": "purchase", "value": "NaN", "currency": "EUR"},
        {"pt": "PT", "name": "purchase", "value": 1e30, "currency": "EUR"},
        {"pt": "PT", "name": "purchase\x1fx"},
        {"pt": "PT", "name": "purchase", "id": "has space"},
        {"pt": "PT", "name": "purchase", "id": "x" * 129},
        {"pt": "PT", "name": "purchase", "extra": 1},
        {"pt": 5, "name": "purchase"},
    ],
)
def test_malformed_payloads_are_422(
    embedded: TestClient, settings: Settings, db: Session, user: User, payload: Any
) -> None:
    tree = shop(db, user)
    reload_origins(embedded)
    if isinstance(payload, dict) and payload.get("pt") == "PT":
        payload = {**payload, "pt": token(settings, tree)}
    answer = post(embedded, payload)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "validation_error"
    flush_memory(embedded)
    assert rows(db) == []


def test_oversized_and_unsupported_bodies(embedded: TestClient, settings: Settings, db: Session, user: User) -> None:
    tree = shop(db, user)
    reload_origins(embedded)
    big = json.dumps(body(token(settings, tree), pad="x" * 5000)).encode()
    declared = post(embedded, big)
    assert declared.status_code == 413
    assert declared.json()["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield big[:3000]
        yield big[3000:]

    streamed = embedded.post("/e", content=chunks(), headers=TEXT)
    assert streamed.status_code == 413
    form = post(embedded, b"pt=x", {"content-type": "application/x-www-form-urlencoded", "origin": SHOP})
    assert form.status_code == 415
    flush_memory(embedded)
    assert rows(db) == []


@pytest.mark.parametrize("level", [Tracking.off, Tracking.anonymous])
def test_consent_levels(embedded: TestClient, settings: Settings, db: Session, user: User, level: Tracking) -> None:
    tree = shop(db, user, tracking=level.value)
    reload_origins(embedded)
    assert post(embedded, body(token(settings, tree))).status_code == 204  # the page cannot tell
    flush_memory(embedded)
    expected = [] if level == Tracking.off else [(None, tree["group"].id, "purchase", Decimal("42.5000"), "EUR")]
    assert [r[:5] for r in rows(db)] == expected


def test_an_anonymous_token_counts_in_the_group_only(
    embedded: TestClient, settings: Settings, db: Session, user: User
) -> None:
    tree = shop(db, user)
    reload_origins(embedded)
    pt = token(settings, tree, anonymous=True)
    assert post(embedded, body(pt)).status_code == 204
    assert post(embedded, body(pt, id="order-2")).status_code == 204
    flush_memory(embedded)
    assert [(r[0], r[1], r[5]) for r in rows(db)] == [
        (None, tree["group"].id, "order-1"),
        (None, tree["group"].id, "order-2"),
    ]


def test_rate_limited_per_ip(settings: Settings, engine: Engine, db: Session, user: User) -> None:
    tree = shop(db, user)
    with TestClient(create_asgi(settings.model_copy(update={"conversion_rate_limit_per_minute": 2}))) as client:
        pt = token(settings, tree)
        answers = [post(client, body(pt, id=f"o{i}")).status_code for i in range(3)]
        gif = client.get("/e.gif", params={"pt": pt, "name": "x"})
        flush_memory(client)
    assert answers == [204, 204, 429]
    assert gif.status_code == 429
    assert int(gif.headers["retry-after"]) >= 1
    assert [r[5] for r in rows(db)] == ["o0", "o1"]


def test_tracking_disabled_answers_and_records_nothing(
    settings: Settings, engine: Engine, db: Session, user: User
) -> None:
    tree = shop(db, user)
    with TestClient(create_asgi(settings.model_copy(update={"tracking_disabled": True}))) as client:
        assert post(client, body(token(settings, tree))).status_code == 204
        flush_memory(client)
    assert rows(db) == []


def test_the_script_is_small_cacheable_and_versioned(embedded: TestClient) -> None:
    first = embedded.get("/t.js")
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    assert len(first.content) <= 3 * 1024
    assert first.headers["cache-control"] == "public, max-age=3600"
    assert f'api.version = "{script.version()}"'.encode() in first.content
    for needed in (b"sendBeacon", b"keepalive", b"localStorage"):
        assert needed in first.content
    again = embedded.get("/t.js", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    versioned = embedded.get(f"/t.js?v={script.version()}")
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.content == first.content


def test_a_deleted_campaigns_origin_is_refused_at_once(
    embedded: TestClient, settings: Settings, db: Session, user: User, headers: dict[str, str]
) -> None:
    tree = shop(db, user)
    reload_origins(embedded)
    preflight = {"origin": SHOP, "access-control-request-method": "POST"}
    assert embedded.options("/e", headers=preflight).status_code == 204
    assert embedded.delete(f"/api/v1/campaigns/{tree['campaign'].id}", headers=headers).status_code == 204
    assert embedded.options("/e", headers=preflight).status_code == 403  # reloaded when the delete committed


def test_the_documented_routes_answer_as_the_fast_path(
    client: TestClient, settings: Settings, db: Session, user: User
) -> None:
    """The FastAPI routes (no fast path in front) share the Intake: same answers."""
    tree = shop(db, user)
    reload_origins(client)
    assert post(client, body(token(settings, tree))).status_code == 204
    assert post(client, b"x" * 5000).status_code == 413
    assert post(client, b"nope").status_code == 422
    assert client.options("/e", headers={"origin": SHOP, "access-control-request-method": "POST"}).status_code == 204
    assert client.get("/t.js").status_code == 200
    assert client.get("/e.gif", params={"pt": "bad", "name": "x"}).status_code == 404
    flush_memory(client)
    assert rows(db) == [purchase(tree)]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"post", "options"} <= set(paths["/e"])
    assert "get" in paths["/e.gif"]
    assert "get" in paths["/t.js"]


def test_origins_edited_through_the_api_apply_at_once(
    embedded: TestClient, settings: Settings, db: Session, user: User, headers: dict[str, str]
) -> None:
    tree = shop(db, user)
    reload_origins(embedded)
    pt, moved = token(settings, tree), "https://new-shop.example"
    patch = {"conversion_origins": [moved]}
    assert embedded.patch(f"/api/v1/campaigns/{tree['campaign'].id}", json=patch, headers=headers).status_code == 200
    # No reload asked for: the commit of the PATCH reloaded this process's cache.
    assert post(embedded, body(pt), {**TEXT, "origin": moved}).status_code == 204
    assert post(embedded, body(pt, id="o-2"), TEXT).status_code == 403  # the old origin is no longer one
    created = embedded.post(
        "/api/v1/campaigns", json={"name": "Another", "conversion_origins": ["https://third.example"]}, headers=headers
    )
    assert created.status_code == 201
    preflight = {"origin": "https://third.example", "access-control-request-method": "POST"}
    assert embedded.options("/e", headers=preflight).status_code == 204
    flush_memory(embedded)
    assert rows(db) == [purchase(tree)]
