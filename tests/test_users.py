"""Admin-only user management: /api/v1/users and /api/v1/users/{id}."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, Group, Opening, Pixel, User
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error

NEW_PASSWORD = "a-long-enough-password"
USER_FIELDS = {"id", "username", "email", "is_admin", "is_active", "created_at"}


def login(client, username: str, password: str = factories.PASSWORD):
    return client.post("/auth/token", data={"username": username, "password": password})


def bearer(response: Any) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def user_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(User)) or 0


def assert_no_secret(response: Any, password: str | None = None) -> None:
    text = response.text
    assert "hashed_password" not in text
    assert "$argon2" not in text
    assert "password" not in text
    if password is not None:
        assert password not in text


# Admin only.


def _routes(target_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", {"username": "intruder", "email": "i@example.com", "password": NEW_PASSWORD}),
        ("GET", f"/api/v1/users/{target_id}", None),
        ("PATCH", f"/api/v1/users/{target_id}", {"is_admin": True}),
        ("DELETE", f"/api/v1/users/{target_id}", None),
    ]


@pytest.mark.parametrize("route", range(5), ids=["list", "create", "get", "patch", "delete"])
@pytest.mark.parametrize("target", ["self", "other"])
def test_non_admin_is_403_on_every_route(
    client, db: Session, user: User, headers: dict[str, str], other_user: User, route: int, target: str
) -> None:
    target_user = user if target == "self" else other_user
    method, path, body = _routes(target_user.id)[route]
    before = user_count(db)
    assert_error(client.request(method, path, json=body, headers=headers), 403, "admin_required")
    db.expire_all()
    assert user_count(db) == before
    row = db.get_one(User, target_user.id)
    assert (row.is_admin, row.is_active) == (False, True)


@pytest.mark.parametrize("route", range(5), ids=["list", "create", "get", "patch", "delete"])
def test_anonymous_is_401_on_every_route(client, db: Session, user: User, route: int) -> None:
    method, path, body = _routes(user.id)[route]
    assert_error(client.request(method, path, json=body), 401, "not_authenticated")
    assert user_count(db) == 1


# Create.


def test_create_user_who_can_then_log_in(client, db: Session, admin_headers: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/users",
        json={"username": "marketing", "email": "marketing@example.com", "password": NEW_PASSWORD},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == USER_FIELDS
    assert (body["username"], body["email"], body["is_admin"], body["is_active"]) == (
        "marketing",
        "marketing@example.com",
        False,
        True,
    )
    assert_no_secret(response, NEW_PASSWORD)

    row = db.get_one(User, body["id"])
    assert row.username == "marketing"
    assert row.hashed_password.startswith("$argon2")
    assert NEW_PASSWORD not in row.hashed_password

    me = client.get("/auth/me", headers=bearer(login(client, "marketing", NEW_PASSWORD)))
    assert me.status_code == 200
    assert me.json()["id"] == body["id"]
    assert_error(client.get("/api/v1/users", headers=bearer(login(client, "marketing", NEW_PASSWORD))), 403)


def test_create_admin_user(client, db: Session, admin_headers: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/users",
        json={"username": "boss", "email": "boss@example.com", "password": NEW_PASSWORD, "is_admin": True},
        headers=admin_headers,
    )
    assert response.status_code == 201
    assert response.json()["is_admin"] is True
    assert db.get_one(User, response.json()["id"]).is_admin is True
    listed = client.get("/api/v1/users", headers=bearer(login(client, "boss", NEW_PASSWORD)))
    assert listed.status_code == 200


def test_duplicate_username_is_409(client, db: Session, user: User, admin_headers: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/users",
        json={"username": "alice", "email": "another@example.com", "password": NEW_PASSWORD},
        headers=admin_headers,
    )
    body = assert_error(response, 409, "conflict")
    assert body["detail"][0]["loc"] == ["body", "username"]
    db.expire_all()
    assert db.scalars(select(User.email).where(User.username == "alice")).all() == ["alice@example.com"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"email": "not-an-email"}, "email", id="email-no-at"),
        pytest.param({"email": "a@b@example.com"}, "email", id="email-two-ats"),
        pytest.param({"email": "x" * 250 + "@example.com"}, "email", id="email-too-long"),
        pytest.param({"password": "short7!"}, "password", id="password-7-chars"),
        pytest.param({"password": "p" * 129}, "password", id="password-too-long"),
        pytest.param({"username": "bad name"}, "username", id="username-space"),
        pytest.param({"username": "semi;colon"}, "username", id="username-semicolon"),
        pytest.param({"username": "<script>"}, "username", id="username-markup"),
        pytest.param({"username": "ab"}, "username", id="username-too-short"),
        pytest.param({"username": "u" * 65}, "username", id="username-too-long"),
        pytest.param({"is_admin": "maybe"}, "is_admin", id="is-admin-not-bool"),
        pytest.param({"token_version": 5}, "token_version", id="token-version-unknown"),
        pytest.param({"id": 999}, "id", id="id-unknown"),
        pytest.param({"hashed_password": "$argon2id$x"}, "hashed_password", id="hash-unknown"),
        pytest.param({"is_active": False}, "is_active", id="is-active-not-on-create"),
    ],
)
def test_create_invalid_is_422_and_creates_nothing(
    client, db: Session, admin_headers: dict[str, str], payload: dict[str, Any], field: str
) -> None:
    data = {"username": "newcomer", "email": "newcomer@example.com", "password": NEW_PASSWORD, **payload}
    before = user_count(db)
    body = assert_error(client.post("/api/v1/users", json=data, headers=admin_headers), 422, "validation_error")
    assert body["detail"][0]["loc"][:2] == ["body", field]
    assert_no_secret_in_errors(body)
    assert user_count(db) == before


def assert_no_secret_in_errors(body: dict[str, Any]) -> None:
    assert NEW_PASSWORD not in str(body)
    assert "short7!" not in str(body)


@pytest.mark.parametrize("missing", ["username", "email", "password"])
def test_create_missing_field_is_422(client, db: Session, admin_headers: dict[str, str], missing: str) -> None:
    data = {"username": "newcomer", "email": "newcomer@example.com", "password": NEW_PASSWORD}
    del data[missing]
    body = assert_error(client.post("/api/v1/users", json=data, headers=admin_headers), 422, "validation_error")
    assert body["detail"][0]["loc"] == ["body", missing]
    assert user_count(db) == 1


# Read.


def test_list_users_is_paginated_and_has_no_secrets(
    client, db: Session, admin: User, admin_headers: dict[str, str]
) -> None:
    made = [factories.make_user(db) for _ in range(3)]
    response = client.get("/api/v1/users", headers=admin_headers)
    assert response.status_code == 200
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (4, 50, 0)
    assert [item["id"] for item in page["items"]] == [admin.id, *(u.id for u in made)]
    assert all(set(item) == USER_FIELDS for item in page["items"])
    assert_no_secret(response)
    second = client.get("/api/v1/users", params={"limit": 2, "offset": 1}, headers=admin_headers).json()
    assert [item["id"] for item in second["items"]] == [made[0].id, made[1].id]


def test_get_user(client, user: User, admin_headers: dict[str, str]) -> None:
    response = client.get(f"/api/v1/users/{user.id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert set(response.json()) == USER_FIELDS
    assert_no_secret(response)


def test_get_unknown_user_is_404(client, admin_headers: dict[str, str]) -> None:
    assert_error(client.get("/api/v1/users/987654", headers=admin_headers), 404, "not_found")


# Update.


def test_patch_email_and_username(client, db: Session, user: User, admin_headers: dict[str, str]) -> None:
    response = client.patch(
        f"/api/v1/users/{user.id}", json={"email": "alice@new.example.com", "username": "alice2"}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert (response.json()["email"], response.json()["username"]) == ("alice@new.example.com", "alice2")
    db.expire_all()
    row = db.get_one(User, user.id)
    assert (row.email, row.username) == ("alice@new.example.com", "alice2")
    assert login(client, "alice2").status_code == 200


def test_patch_username_to_a_taken_one_is_409(
    client, db: Session, user: User, other_user: User, admin_headers: dict[str, str]
) -> None:
    body = assert_error(
        client.patch(f"/api/v1/users/{user.id}", json={"username": "mallory"}, headers=admin_headers), 409, "conflict"
    )
    assert body["detail"][0]["loc"] == ["body", "username"]
    db.expire_all()
    assert db.get_one(User, user.id).username == "alice"


def test_deactivating_a_user_revokes_their_token_and_login(
    client, db: Session, user: User, headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    assert client.get("/auth/me", headers=headers).status_code == 200
    response = client.patch(f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    db.expire_all()
    assert db.get_one(User, user.id).is_active is False

    stale = client.get("/auth/me", headers=headers)
    assert stale.status_code in (401, 403), stale.text
    assert_error(stale, stale.status_code)
    assert_error(client.get("/api/v1/campaigns", headers=headers), stale.status_code)
    assert_error(login(client, "alice"), 401, "invalid_credentials")

    assert client.patch(f"/api/v1/users/{user.id}", json={"is_active": True}, headers=admin_headers).status_code == 200
    assert client.get("/auth/me", headers=bearer(login(client, "alice"))).status_code == 200


def test_promoting_a_user_gives_admin_rights(
    client, user: User, headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    assert_error(client.get("/api/v1/users", headers=headers), 403, "admin_required")
    assert client.patch(f"/api/v1/users/{user.id}", json={"is_admin": True}, headers=admin_headers).status_code == 200
    assert client.get("/api/v1/users", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"token_version": 99}, "token_version", id="token-version"),
        pytest.param({"id": 1}, "id", id="id"),
        pytest.param({"hashed_password": "x"}, "hashed_password", id="hashed-password"),
        pytest.param({"created_at": "2020-01-01T00:00:00Z"}, "created_at", id="created-at"),
        pytest.param({"email": "nope"}, "email", id="invalid-email"),
        pytest.param({"password": "1234567"}, "password", id="short-password"),
        pytest.param({"username": "no spaces"}, "username", id="bad-username"),
        pytest.param({"username": None}, None, id="null-username"),
        pytest.param({"is_active": None}, None, id="null-is-active"),
    ],
)
def test_patch_invalid_is_422_and_changes_nothing(
    client, db: Session, user: User, admin_headers: dict[str, str], payload: dict[str, Any], field: str | None
) -> None:
    body = assert_error(
        client.patch(f"/api/v1/users/{user.id}", json=payload, headers=admin_headers), 422, "validation_error"
    )
    if field is not None:
        assert body["detail"][0]["loc"][:2] == ["body", field]
    db.expire_all()
    row = db.get_one(User, user.id)
    assert (row.username, row.email, row.token_version, row.is_active, row.is_admin) == (
        "alice",
        "alice@example.com",
        0,
        True,
        False,
    )


def test_patch_unknown_user_is_404(client, admin_headers: dict[str, str]) -> None:
    assert_error(client.patch("/api/v1/users/987654", json={"is_admin": True}, headers=admin_headers), 404)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        pytest.param("PATCH", {"is_admin": False}, id="demote"),
        pytest.param("PATCH", {"is_active": False}, id="deactivate"),
        pytest.param("PATCH", {"is_admin": False, "email": "x@example.com"}, id="demote-with-other-change"),
        pytest.param("DELETE", None, id="delete"),
    ],
)
def test_admin_cannot_lock_themselves_out(
    client, db: Session, admin: User, admin_headers: dict[str, str], method: str, body: dict[str, Any] | None
) -> None:
    assert_error(
        client.request(method, f"/api/v1/users/{admin.id}", json=body, headers=admin_headers), 409, "self_lockout"
    )
    db.expire_all()
    row = db.get_one(User, admin.id)
    assert (row.is_admin, row.is_active, row.email) == (True, True, "root_admin@example.com")
    assert client.get("/api/v1/users", headers=admin_headers).status_code == 200


def test_admin_can_demote_another_admin(client, db: Session, admin_headers: dict[str, str]) -> None:
    second = factories.make_user(db, username="second_admin", is_admin=True)
    response = client.patch(f"/api/v1/users/{second.id}", json={"is_admin": False}, headers=admin_headers)
    assert response.status_code == 200
    db.expire_all()
    assert db.get_one(User, second.id).is_admin is False


# Delete.


def test_deleting_a_user_deletes_their_campaigns_and_everything_below(
    client, db: Session, user: User, other_user: User, admin_headers: dict[str, str]
) -> None:
    factories.make_tree(db, user)
    factories.make_tree(db, user)
    kept = factories.make_tree(db, other_user)
    user_id = user.id

    assert client.delete(f"/api/v1/users/{user_id}", headers=admin_headers).status_code == 204
    db.expire_all()
    assert db.get(User, user_id) is None
    assert db.scalars(select(Campaign.id)).all() == [kept["campaign"].id]
    assert db.scalars(select(Group.id)).all() == [kept["group"].id]
    assert db.scalars(select(Contact.id)).all() == [kept["contact"].id]
    assert db.scalars(select(Pixel.id)).all() == [kept["pixel"].id]
    assert db.scalars(select(Opening.id)).all() == [kept["opening"].id]
    assert_error(client.get(f"/api/v1/users/{user_id}", headers=admin_headers), 404, "not_found")


def test_deleted_user_cannot_log_in(client, user: User, admin_headers: dict[str, str]) -> None:
    assert client.delete(f"/api/v1/users/{user.id}", headers=admin_headers).status_code == 204
    assert_error(login(client, "alice"), 401, "invalid_credentials")


def test_token_of_deleted_user_never_authenticates_a_later_user(
    client, db: Session, settings: Settings, admin_headers: dict[str, str]
) -> None:
    # The deleted user has the highest id: SQLite would hand that id out again without AUTOINCREMENT.
    victim = factories.make_user(db, username="leaving")
    victim_id, victim_headers = victim.id, factories.headers_for(settings, victim)
    assert client.delete(f"/api/v1/users/{victim_id}", headers=admin_headers).status_code == 204
    created = client.post(
        "/api/v1/users",
        json={"username": "arriving", "email": "arriving@example.com", "password": NEW_PASSWORD},
        headers=admin_headers,
    )
    assert created.status_code == 201
    assert created.json()["id"] != victim_id
    assert_error(client.get("/auth/me", headers=victim_headers), 401, "invalid_token")


def test_delete_unknown_user_is_404(client, admin_headers: dict[str, str]) -> None:
    assert_error(client.delete("/api/v1/users/987654", headers=admin_headers), 404, "not_found")
