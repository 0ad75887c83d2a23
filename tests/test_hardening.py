"""Abuse limits, security headers, CORS, privacy switches, retention purge and erasure."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import cli
from app.clients import sync_redis
from app.main import create_asgi
from app.models import Click, Contact, Opening, Pixel, User
from app.services.retention import parse_age, purge
from app.settings import Settings, get_settings
from app.tracking.worker import StreamWorker
from tests import factories
from tests.helpers import assert_error, count
from tests.support.app_state import app_state, flush_memory
from tests.support.cli_env import cli_environment

# Fixed windows (minutes): a clock that stands still, so no test straddles two (tests/support/clock.py).
pytestmark = pytest.mark.usefixtures("still_windows")


def _client(settings: Settings, **overrides: Any) -> TestClient:
    return TestClient(create_asgi(settings.model_copy(update=overrides)))


def _login(client: TestClient, username: str, password: str = factories.PASSWORD) -> Any:
    return client.post("/auth/token", data={"username": username, "password": password})


def _flush(client: TestClient) -> None:
    flush_memory(client)


# --- failed-login throttling and per-user rate limit --------------------------------------------


def test_login_brute_force_is_throttled_per_username_and_ip(settings: Settings, engine: Engine, db: Session) -> None:
    factories.make_user(db, username="victim")
    factories.make_user(db, username="bystander")
    with _client(settings, login_max_failures=3, login_failure_window_seconds=600) as client:
        assert [_login(client, "victim", "wrong-password").status_code for _ in range(3)] == [401, 401, 401]
        blocked = _login(client, "victim")  # even the right password, while blocked
        body = assert_error(blocked, 429, "rate_limited")
        assert "password" not in str(body["detail"]).lower()
        assert 1 <= int(blocked.headers["retry-after"]) <= 600
        assert _login(client, "bystander", "wrong-password").status_code == 401  # other usernames unaffected
        assert _login(client, "bystander").status_code == 200


def test_successful_login_clears_the_failure_count(settings: Settings, engine: Engine, db: Session) -> None:
    factories.make_user(db, username="forgetful")
    with _client(settings, login_max_failures=3) as client:
        assert [_login(client, "forgetful", "nope-nope").status_code for _ in range(2)] == [401, 401]
        assert _login(client, "forgetful").status_code == 200
        assert [_login(client, "forgetful", "nope-nope").status_code for _ in range(3)] == [401, 401, 401]
        assert _login(client, "forgetful", "nope-nope").status_code == 429


def test_login_throttle_is_shared_through_redis(
    settings: Settings, engine: Engine, db: Session, redis_client: Any, redis_url: str
) -> None:
    """Two API processes (here: two app instances) share the failure count through Redis."""
    factories.make_user(db, username="shared")
    with (
        _client(settings, redis_url=redis_url, login_max_failures=4) as a,
        _client(settings, redis_url=redis_url, login_max_failures=4) as b,
    ):
        assert [_login(c, "shared", "wrong-password").status_code for c in (a, b, a, b)] == [401] * 4
        assert_error(_login(a, "shared"), 429, "rate_limited")
        assert_error(_login(b, "shared"), 429, "rate_limited")
    assert redis_client.keys("pt:rl:{login:shared:*")


def test_per_user_rate_limit(settings: Settings, engine: Engine, db: Session) -> None:
    alice, bob = factories.make_user(db, username="busy"), factories.make_user(db, username="calm")
    with _client(settings, rate_limit_per_minute=5) as client:
        statuses = [
            client.get("/api/v1/campaigns", headers=factories.headers_for(settings, alice)).status_code
            for _ in range(6)
        ]
        assert statuses == [200] * 5 + [429]
        limited = client.get("/api/v1/campaigns", headers=factories.headers_for(settings, alice))
        assert_error(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert client.get("/api/v1/campaigns", headers=factories.headers_for(settings, bob)).status_code == 200


# --- headers -----------------------------------------------------------------------------------


def test_security_headers_on_api_responses(client: TestClient, headers: dict[str, str]) -> None:
    for response in (
        client.get("/api/v1/campaigns", headers=headers),
        client.get("/api/v1/campaigns"),
        client.get("/healthz"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert client.get("/api/v1/campaigns", headers=headers).headers["cache-control"] == "no-store"
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers  # Swagger UI loads its assets from a CDN
    assert docs.headers["x-frame-options"] == "DENY"


def test_pixel_answers_with_nosniff(settings: Settings, engine: Engine, db: Session, user: User) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    with _client(settings) as client:
        response = client.get(f"/o/{app_state(client).tracker.codec.pixel_token(pixel.id)}.gif")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_cors_only_for_configured_origins_and_never_with_credentials(settings: Settings, engine: Engine) -> None:
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    with _client(settings, cors_origins="https://app.example.com, https://other.example.com/") as client:
        allowed = client.options("/api/v1/campaigns", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "access-control-allow-credentials" not in allowed.headers
        denied = client.options("/api/v1/campaigns", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in denied.headers
    with _client(settings, cors_origins="*") as client:
        wildcard = client.get("/healthz", headers={"Origin": "https://any.example"})
        assert wildcard.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in wildcard.headers
    with _client(settings) as client:
        assert (
            "access-control-allow-origin"
            not in client.get("/healthz", headers={"Origin": "https://app.example.com"}).headers
        )


# --- privacy switches --------------------------------------------------------------------------


def test_tracking_disabled_answers_but_records_nothing(
    settings: Settings, engine: Engine, db: Session, user: User
) -> None:
    tree = factories.make_tree(db, user)
    before_open, before_click = count(db, Opening), count(db, Click)
    with _client(settings, tracking_disabled=True) as client:
        codec = app_state(client).tracker.codec
        pixel = client.get(f"/o/{codec.pixel_token(tree['pixel'].id)}.gif")
        assert pixel.status_code == 200
        assert pixel.headers["content-type"] == "image/gif"
        click = client.get(f"/c/{codec.click_token(tree['link'].id, tree['contact'].id)}", follow_redirects=False)
        assert click.status_code == 302
        assert click.headers["location"] == tree["link"].url
        assert app_state(client).tracking.memory.pending == 0
        _flush(client)
    assert (count(db, Opening), count(db, Click)) == (before_open, before_click)


@pytest.mark.parametrize(
    ("respect", "headers", "recorded"),
    [
        (True, {"DNT": "1"}, False),
        (True, {"Sec-GPC": "1"}, False),
        (True, {"DNT": "0"}, True),
        (True, {}, True),
        (False, {"DNT": "1"}, True),
    ],
)
def test_respect_dnt(
    settings: Settings, engine: Engine, db: Session, user: User, respect: bool, headers: dict[str, str], recorded: bool
) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    with _client(settings, respect_dnt=respect) as client:
        response = client.get(f"/o/{app_state(client).tracker.codec.pixel_token(pixel.id)}.gif", headers=headers)
        assert response.status_code == 200
        _flush(client)
    assert count(db, Opening, pixel_id=pixel.id) == 1 + int(recorded)


# --- retention ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("180d", timedelta(days=180)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        (" 30m ", timedelta(minutes=30)),
    ],
)
def test_parse_age(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("bad", ["", "180", "d", "-5d", "0d", "5y", "1.5d", "9999999d"])
def test_parse_age_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="age"):
        parse_age(bad)


def _aged_data(db: Session, user: User) -> dict[str, Any]:
    tree = factories.make_tree(db, user)
    now = datetime.now(UTC)
    old = [factories.make_opening(db, tree["pixel"], opened_at=now - timedelta(days=200 + i)) for i in range(7)]
    new = [factories.make_opening(db, tree["pixel"], opened_at=now - timedelta(days=10))]
    old_click = factories.make_click(db, tree["link"], tree["contact"], clicked_at=now - timedelta(days=365))
    factories.make_click(db, tree["link"], tree["contact"], clicked_at=now)
    return {"tree": tree, "old": old, "new": new, "old_click": old_click}


def test_purge_deletes_only_older_rows_in_batches(engine: Engine, db: Session, user: User) -> None:
    data = _aged_data(db, user)
    before_open, before_click = count(db, Opening), count(db, Click)
    cutoff = datetime.now(UTC) - timedelta(days=180)
    assert purge(engine, cutoff, dry_run=True) == {"openings": 7, "clicks": 1}
    assert (count(db, Opening), count(db, Click)) == (before_open, before_click)
    seen: list[tuple[str, int]] = []
    done = purge(engine, cutoff, batch_size=3, progress=lambda t, n: seen.append((t, n)))
    assert done == {"openings": 7, "clicks": 1}
    assert seen == [("openings", 3), ("openings", 6), ("openings", 7), ("clicks", 1)]
    assert count(db, Opening) == before_open - 7
    assert count(db, Click) == before_click - 1
    assert count(db, Opening, id=data["new"][0].id) == 1
    assert count(db, Opening, id=data["old"][0].id) == 0


def test_purge_cli(
    engine: Engine,
    db: Session,
    user: User,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _aged_data(db, user)
    with cli_environment(monkeypatch, settings):
        assert cli.main(["purge", "--older-than", "nonsense"]) == 2
        assert cli.main(["purge", "--older-than", "180d", "--dry-run"]) == 0
        assert "would delete" in capsys.readouterr().out
        before = count(db, Opening)
        assert cli.main(["purge", "--older-than", "180d", "--batch-size", "2"]) == 0
        out = capsys.readouterr().out
        assert "deleted before" in out
        assert "7 openings" in out
        assert count(db, Opening) == before - 7


# --- erasure (GDPR) ----------------------------------------------------------------------------


def test_deleting_a_contact_erases_everything_about_them(
    settings: Settings,
    engine: Engine,
    db: Session,
    user: User,
    redis_client: Any,
    redis_url: str,
    headers: dict[str, str],
) -> None:
    tree = factories.make_tree(db, user)
    person, group = tree["contact"], tree["group"]
    other = factories.make_contact(db, group, email="keep@example.com")
    factories.make_opening(db, factories.make_pixel(db, other))
    second_pixel = factories.make_pixel(db, person, number=2)
    factories.make_opening(db, second_pixel)
    factories.make_click(db, tree["link"], person)
    with _client(settings, redis_url=redis_url) as client:
        codec = app_state(client).tracker.codec
        # A load still waiting in the stream when the erasure happens must not bring data back.
        assert client.get(f"/o/{codec.pixel_token(second_pixel.id)}.gif").status_code == 200
        assert client.delete(f"/api/v1/contacts/{person.id}", headers=headers).status_code == 204
    StreamWorker(sync_redis(redis_url), engine, consumer="erasure").drain()
    assert count(db, Contact, id=person.id) == 0
    assert count(db, Pixel, contact_id=person.id) == 0
    assert count(db, Opening, contact_id=person.id) == 0
    assert count(db, Click, contact_id=person.id) == 0
    assert count(db, Opening, contact_id=other.id) == 1  # nobody else's data is touched


# --- secrets never in logs or bodies -----------------------------------------------------------


def test_secrets_never_logged(
    settings: Settings, engine: Engine, db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    factories.make_user(db, username="logger")
    caplog.set_level(logging.DEBUG)
    with _client(settings) as client:
        ok = _login(client, "logger")
        token = ok.json()["access_token"]
        client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        _login(client, "logger", "a-wrong-secret-password")
        client.get("/auth/me", headers={"Authorization": "Bearer not-a-token"})
    text = caplog.text + json.dumps([r.args for r in caplog.records], default=str)
    for secret in (
        token,
        factories.PASSWORD,
        "a-wrong-secret-password",
        settings.secret_key(),
        settings.fernet_keys()[0],
    ):
        assert secret not in text


def test_rs256_header_confusion_is_401(client: TestClient, settings: Settings, user: User) -> None:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": str(user.id), "ver": 0, "typ": "access", "iat": now, "nbf": now, "exp": now + 300}
    token = f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.{base64.urlsafe_b64encode(b'x' * 256).rstrip(b'=').decode()}"
    assert_error(client.get("/auth/me", headers={"Authorization": f"Bearer {token}"}), 401, "invalid_token")


@pytest.fixture(autouse=True)
def _no_leftover_settings_cache() -> Iterator[None]:
    yield
    get_settings.cache_clear()
