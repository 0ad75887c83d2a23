"""API keys (issue #13, section 4): created, listed and revoked by their owner only; accepted as
`Authorization: Bearer pt_…` on every authenticated route, acting as the owner (same campaigns,
same rate limit, refused when the owner is inactive); stored hashed, never logged."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from app import authn
from app.main import create_asgi
from app.models import ApiKey, User
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error, count
from tests.support.routes import API_CALLS

# Fixed windows (minutes): a clock that stands still, so no test straddles two (tests/support/clock.py).
pytestmark = pytest.mark.usefixtures("still_windows")

KEYS = "/api/v1/api-keys"


def _create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(KEYS, json={"name": "newsletter tool", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_key_is_shown_once_and_stored_only_as_its_hash(
    client: TestClient, headers: dict[str, str], db: Session
) -> None:
    created = _create(client, headers)
    key = created["key"]
    assert re.fullmatch(r"pt_[A-Za-z0-9_-]{43,}", key), key  # 32 random bytes, url-safe base64
    assert created["prefix"] == key[:11]
    assert created["name"] == "newsletter tool"
    assert created["last_used_at"] is None
    assert created["expires_at"] is None
    assert set(created) == {"id", "name", "prefix", "created_at", "last_used_at", "expires_at", "key"}
    row = db.scalar(select(ApiKey).where(ApiKey.id == created["id"]))
    assert row is not None
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in (row.name, row.prefix, row.key_hash)
    # Two keys never collide, and the list shows neither a key nor a hash.
    other = _create(client, headers, name="second")
    assert other["key"] != key
    listed = client.get(KEYS, headers=headers)
    assert listed.status_code == 200
    assert key not in listed.text
    assert other["key"] not in listed.text
    assert row.key_hash not in listed.text
    assert [item["name"] for item in listed.json()["items"]] == ["newsletter tool", "second"]
    assert set(listed.json()["items"][0]) == {"id", "name", "prefix", "created_at", "last_used_at", "expires_at"}


def test_the_list_is_paginated_and_personal_even_for_an_admin(
    client: TestClient, db: Session, user: User, admin: User, headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    for n in range(3):
        factories.make_api_key(db, user, name=f"alice-{n}")
    factories.make_api_key(db, admin, name="admin's")
    page = client.get(f"{KEYS}?limit=2&offset=1", headers=headers).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    assert [item["name"] for item in page["items"]] == ["alice-1", "alice-2"]
    assert [item["name"] for item in client.get(KEYS, headers=admin_headers).json()["items"]] == ["admin's"]


def test_revoking_someone_elses_key_is_404_even_for_an_admin(
    client: TestClient,
    db: Session,
    user: User,
    headers: dict[str, str],
    other_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    row, key = factories.make_api_key(db, user)
    for intruder in (other_headers, admin_headers):
        assert_error(client.delete(f"{KEYS}/{row.id}", headers=intruder), 404, "not_found")
    assert client.get("/auth/me", headers=_bearer(key)).status_code == 200
    assert_error(client.delete(f"{KEYS}/{row.id + 1000}", headers=headers), 404, "not_found")


def test_a_revoked_key_is_refused_on_the_next_request(client: TestClient, headers: dict[str, str], db: Session) -> None:
    created = _create(client, headers)
    key = created["key"]
    assert client.get("/auth/me", headers=_bearer(key)).status_code == 200  # cached now
    assert client.delete(f"{KEYS}/{created['id']}", headers=headers).status_code == 204
    assert_error(client.get("/auth/me", headers=_bearer(key)), 401, "invalid_token")
    assert_error(client.post("/api/v1/campaigns", json={"name": "x"}, headers=_bearer(key)), 401, "invalid_token")
    assert count(db, ApiKey) == 0
    assert_error(client.delete(f"{KEYS}/{created['id']}", headers=headers), 404, "not_found")


def test_a_key_revokes_itself(client: TestClient, headers: dict[str, str]) -> None:
    created = _create(client, headers)
    assert client.delete(f"{KEYS}/{created['id']}", headers=_bearer(created["key"])).status_code == 204
    assert_error(client.get(KEYS, headers=_bearer(created["key"])), 401, "invalid_token")


@pytest.mark.parametrize("expires_at", ["a second ago", "2020-01-01T00:00:00Z"])
def test_an_expiry_in_the_past_is_422(
    client: TestClient, headers: dict[str, str], db: Session, expires_at: str
) -> None:
    if expires_at == "a second ago":
        expires_at = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    response = client.post(KEYS, json={"name": "late", "expires_at": expires_at}, headers=headers)
    body = assert_error(response, 422, "validation_error")
    assert body["detail"][0]["loc"] == ["body", "expires_at"]
    assert body["detail"][0]["msg"] == "expires_at must be in the future."
    assert count(db, ApiKey) == 0


def test_a_key_works_until_it_expires_then_401(
    client: TestClient, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    created = _create(client, headers, expires_at=expires.isoformat())
    assert datetime.fromisoformat(created["expires_at"]) == expires.replace(microsecond=expires.microsecond)
    assert client.get("/auth/me", headers=_bearer(created["key"])).status_code == 200  # cached with its expiry

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + timedelta(hours=2)

    monkeypatch.setattr(authn, "datetime", Later)
    assert_error(client.get("/auth/me", headers=_bearer(created["key"])), 401, "invalid_token")
    # A body request is refused before its body is read, as with an expired JWT.
    assert_error(
        client.post("/api/v1/campaigns", json={"name": "x"}, headers=_bearer(created["key"])), 401, "invalid_token"
    )


def test_an_expired_key_is_refused(client: TestClient, db: Session, user: User) -> None:
    _, key = factories.make_api_key(db, user, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    assert_error(client.get("/auth/me", headers=_bearer(key)), 401, "invalid_token")


@pytest.mark.parametrize(
    "token",
    [
        "pt_" + "A" * 43,  # well formed, unknown
        "pt_short",
        "pt_" + "!" * 43,
        "pt_",
    ],
)
def test_an_unknown_or_malformed_key_is_401(client: TestClient, db: Session, user: User, token: str) -> None:
    factories.make_api_key(db, user)
    assert_error(client.get("/auth/me", headers=_bearer(token)), 401, "invalid_token")
    assert_error(client.get("/api/v1/campaigns", headers=_bearer(token)), 401, "invalid_token")
    assert_error(client.post("/api/v1/campaigns", json={"name": "x"}, headers=_bearer(token)), 401, "invalid_token")
    assert count(db, ApiKey) == 1


def test_a_key_acts_as_its_owner_on_every_kind_of_route(
    client: TestClient, db: Session, user: User, tree: dict[str, Any], headers: dict[str, str]
) -> None:
    key = _create(client, headers)["key"]
    auth = _bearer(key)
    me = client.get("/auth/me", headers=auth)
    assert me.status_code == 200
    assert me.json()["username"] == user.username
    campaign = tree["campaign"].id
    assert client.get(f"/api/v1/campaigns/{campaign}", headers=auth).json()["id"] == campaign
    created = client.post("/api/v1/campaigns", json={"name": "by key"}, headers=auth)
    assert created.status_code == 201
    assert created.json()["owner_id"] == user.id
    assert client.patch(f"/api/v1/campaigns/{campaign}", json={"name": "renamed"}, headers=auth).status_code == 200
    group = client.post(f"/api/v1/campaigns/{campaign}/groups", json={"name": "B"}, headers=auth).json()
    rows = [{"email": f"k{i}@example.com"} for i in range(3)]
    assert client.post(f"/api/v1/groups/{group['id']}/contacts", json=rows, headers=auth).status_code == 201
    assert client.get(f"/api/v1/campaigns/{campaign}/stats", headers=auth).status_code == 200
    assert client.get(f"/api/v1/campaigns/{campaign}/openings.csv", headers=auth).status_code == 200
    assert client.delete(f"/api/v1/campaigns/{created.json()['id']}", headers=auth).status_code == 204
    # Admin routes stay an admin's: a user's key is not one.
    assert_error(client.get("/api/v1/users", headers=auth), 403, "admin_required")


def test_a_key_sees_only_its_owners_campaigns(
    client: TestClient, db: Session, user: User, other_user: User, headers: dict[str, str]
) -> None:
    mine = factories.make_campaign(db, user)
    theirs = factories.make_campaign(db, other_user)
    auth = _bearer(_create(client, headers)["key"])
    assert_error(client.get(f"/api/v1/campaigns/{theirs.id}", headers=auth), 404, "not_found")
    assert_error(client.patch(f"/api/v1/campaigns/{theirs.id}", json={"name": "x"}, headers=auth), 404, "not_found")
    assert_error(client.delete(f"/api/v1/campaigns/{theirs.id}", headers=auth), 404, "not_found")
    assert [c["id"] for c in client.get("/api/v1/campaigns", headers=auth).json()["items"]] == [mine.id]


def test_an_admins_key_acts_as_an_admin(client: TestClient, db: Session, admin: User, user: User) -> None:
    _, key = factories.make_api_key(db, admin)
    theirs = factories.make_campaign(db, user)
    assert client.get(f"/api/v1/campaigns/{theirs.id}", headers=_bearer(key)).status_code == 200
    assert client.get("/api/v1/users", headers=_bearer(key)).status_code == 200


def test_the_key_of_an_inactive_owner_is_403_and_works_again_once_reactivated(
    client: TestClient, db: Session, user: User, admin_headers: dict[str, str]
) -> None:
    _, key = factories.make_api_key(db, user)
    assert client.get("/auth/me", headers=_bearer(key)).status_code == 200
    assert client.patch(f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin_headers).status_code == 200
    assert_error(client.get("/auth/me", headers=_bearer(key)), 403, "inactive_user")
    assert client.patch(f"/api/v1/users/{user.id}", json={"is_active": True}, headers=admin_headers).status_code == 200
    assert client.get("/auth/me", headers=_bearer(key)).status_code == 200


def test_deleting_a_user_deletes_its_keys(
    client: TestClient, db: Session, user: User, admin_headers: dict[str, str]
) -> None:
    _, key = factories.make_api_key(db, user)
    assert client.get("/auth/me", headers=_bearer(key)).status_code == 200
    assert client.delete(f"/api/v1/users/{user.id}", headers=admin_headers).status_code == 204
    assert count(db, ApiKey) == 0  # foreign key ON DELETE CASCADE
    assert_error(client.get("/auth/me", headers=_bearer(key)), 401, "invalid_token")


def test_last_used_is_recorded_without_a_write_per_request(
    client: TestClient, engine: Engine, db: Session, user: User
) -> None:
    row, key = factories.make_api_key(db, user)
    writes: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_KEYS"):
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    app_engine = client.app.state.engine  # type: ignore[attr-defined]
    event.listen(app_engine, "before_cursor_execute", note)
    try:
        for _ in range(5):
            assert client.get("/auth/me", headers=_bearer(key)).status_code == 200
        client.portal.call(client.app.state.auth.settle)  # type: ignore[union-attr,attr-defined,call-arg]
    finally:
        event.remove(engine, "before_cursor_execute", note)
        event.remove(app_engine, "before_cursor_execute", note)
    assert len(writes) == 1, writes
    db.expire_all()
    used = db.scalar(select(ApiKey.last_used_at).where(ApiKey.id == row.id))
    assert used is not None
    assert abs((datetime.now(UTC) - used).total_seconds()) < 60
    listed = client.get(KEYS, headers=_bearer(key)).json()["items"][0]
    assert listed["last_used_at"] is not None


def test_keys_count_against_their_owners_rate_limit(settings: Settings, db: Session) -> None:
    owner, bystander = factories.make_user(db, username="busy-tool"), factories.make_user(db, username="calm-tool")
    _, key = factories.make_api_key(db, owner)
    jwt = factories.headers_for(settings, owner)
    with TestClient(create_asgi(settings.model_copy(update={"rate_limit_per_minute": 4}))) as limited:
        statuses = [limited.get("/auth/me", headers=h).status_code for h in (jwt, _bearer(key), jwt, _bearer(key))]
        assert statuses == [200] * 4
        refused = limited.get("/api/v1/campaigns", headers=_bearer(key))
        assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert_error(limited.get("/auth/me", headers=jwt), 429, "rate_limited")  # one budget for both
        assert limited.get("/auth/me", headers=factories.headers_for(settings, bystander)).status_code == 200


def test_a_key_never_reaches_the_logs(
    settings: Settings, db: Session, user: User, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_asgi(settings.model_copy(update={"access_log": True, "log_level": "DEBUG"}))
    with caplog.at_level(logging.DEBUG), TestClient(app) as client:
        created = _create(client, headers)
        key = created["key"]
        auth = _bearer(key)
        client.get("/auth/me", headers=auth)
        client.get("/api/v1/campaigns/999999", headers=auth)  # a 404
        client.post("/api/v1/campaigns", content=b"{not json", headers={**auth, "content-type": "application/json"})
        client.delete(f"{KEYS}/{created['id']}", headers=auth)
        client.get("/auth/me", headers=auth)  # a 401 with a revoked key
        client.get("/auth/me", headers=_bearer(key[:-1] + ("x" if key[-1] != "x" else "y")))  # unknown
    digest = hashlib.sha256(key.encode()).hexdigest()
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert key not in logged
    assert key[11:] not in logged
    assert digest not in logged


def test_openapi_offers_both_ways_to_authenticate(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["type"] == "oauth2"
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/auth/token"
    assert schemes["APIKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "pt_…",
        "description": schemes["APIKey"]["description"],
    }
    assert "pt_" in schemes["APIKey"]["description"]
    for path, method in (("/auth/me", "get"), ("/api/v1/campaigns/{campaign_id}", "get"), (KEYS, "post")):
        security = spec["paths"][path][method]["security"]
        assert {"OAuth2PasswordBearer": []} in security, (path, security)
        assert {"APIKey": []} in security, (path, security)
    create = spec["paths"][KEYS]["post"]
    assert create["summary"] == "Create an API key"
    assert set(create["responses"]) >= {"201", "401", "422", "429", "503"}
    created = create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    assert created.endswith("/ApiKeyCreated")
    assert "key_hash" not in str(spec["components"]["schemas"]["ApiKeyOut"])
    assert set(spec["paths"][f"{KEYS}/{{api_key_id}}"]["delete"]["responses"]) >= {"204", "401", "404"}


@pytest.mark.parametrize("call", API_CALLS, ids=[f"{c.method} {c.path}" for c in API_CALLS])
def test_every_route_refuses_missing_and_invalid_credentials(
    client: TestClient, settings: Settings, db: Session, user: User, call: Any
) -> None:
    row, revoked = factories.make_api_key(db, user)
    assert client.delete(f"{KEYS}/{row.id}", headers=_bearer(revoked)).status_code == 204
    path = re.sub(r"{\w+}", "1", call.path)
    refused = {
        "no credentials": ({}, "not_authenticated"),
        "unknown key": (_bearer("pt_" + "B" * 43), "invalid_token"),
        "revoked key": (_bearer(revoked), "invalid_token"),
        "bad JWT": (_bearer(factories.token_for(settings, user).rsplit(".", 1)[0] + ".c2lnbmF0dXJl"), "invalid_token"),
    }
    for what, (headers, code) in refused.items():
        response = client.request(call.method, path, json=call.body, headers=headers)
        assert response.status_code == 401, (what, response.status_code, response.text)
        assert response.json()["code"] == code, what
