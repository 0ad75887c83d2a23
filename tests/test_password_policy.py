"""Passwords: >= 10 characters, not a common one; usernames unique case-insensitively (issue #10, item 23)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.credentials import common_passwords, normalize_username, password_problem
from app.models import User
from tests import factories
from tests.helpers import assert_error, count

GOOD_PASSWORD = "a-long-enough-password"
WEAK = {
    "nine-chars": "abcdefgh9",
    "common-digits": "1234567890",
    "common-word": "basketball",
    "common-any-case": "QwertyUIOP",
    "common-keyboard-walk": "1q2w3e4r5t",
    "only-spaces": " " * 12,
    "too-long": "p" * 129,
}


def _create(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    data = {"username": "newcomer", "email": "newcomer@example.com", "password": GOOD_PASSWORD, **body}
    return client.post("/api/v1/users", json=data, headers=headers)


@pytest.mark.parametrize("password", list(WEAK.values()), ids=list(WEAK))
def test_weak_password_is_422_on_create_and_nothing_is_stored(
    client: TestClient, db: Session, admin_headers: dict[str, str], password: str
) -> None:
    body = assert_error(_create(client, admin_headers, password=password), 422, "validation_error")
    assert body["detail"][0]["loc"][:2] == ["body", "password"]
    assert password.strip() not in str(body) or not password.strip()
    assert count(db, User, User.username == "newcomer") == 0


@pytest.mark.parametrize("password", list(WEAK.values()), ids=list(WEAK))
def test_weak_password_is_422_on_patch_and_the_old_one_still_works(
    client: TestClient, db: Session, user: User, admin_headers: dict[str, str], password: str
) -> None:
    response = client.patch(f"/api/v1/users/{user.id}", json={"password": password}, headers=admin_headers)
    body = assert_error(response, 422, "validation_error")
    assert body["detail"][0]["loc"][:2] == ["body", "password"]
    ok = client.post("/auth/token", data={"username": "alice", "password": factories.PASSWORD})
    assert ok.status_code == 200


def test_ten_characters_not_common_is_accepted(client: TestClient, admin_headers: dict[str, str]) -> None:
    assert _create(client, admin_headers, password="tq8-vz3#kp").status_code == 201


def test_the_common_list_is_shipped_and_says_where_it_comes_from() -> None:
    from importlib.resources import files

    text = files("app").joinpath("data", "common_passwords.txt").read_text(encoding="utf-8")
    assert "Source:" in text.splitlines()[1] + text.splitlines()[0]
    words = common_passwords()
    assert len(words) > 1000
    assert all(len(w) >= 10 and w == w.lower() for w in words)
    assert password_problem(factories.PASSWORD) is None


@pytest.mark.parametrize("taken", ["Alice", "ALICE", "aLiCe"])
def test_usernames_are_unique_case_insensitively(
    client: TestClient, db: Session, user: User, admin_headers: dict[str, str], taken: str
) -> None:
    body = assert_error(_create(client, admin_headers, username=taken), 409, "conflict")
    assert body["detail"][0]["loc"] == ["body", "username"]
    other = factories.make_user(db, username="bob")
    body = assert_error(
        client.patch(f"/api/v1/users/{other.id}", json={"username": taken}, headers=admin_headers), 409, "conflict"
    )
    assert count(db, User) == 3
    assert sorted(db.scalars(select(User.username)).all()) == ["alice", "bob", "root_admin"]


def test_username_is_stored_and_shown_in_lower_case_and_logs_in_any_case(
    client: TestClient, db: Session, admin_headers: dict[str, str]
) -> None:
    created = _create(client, admin_headers, username="Marketing.Team")
    assert created.status_code == 201, created.text
    assert created.json()["username"] == "marketing.team"
    assert db.get_one(User, created.json()["id"]).username == "marketing.team"
    for spelling in ("Marketing.Team", "MARKETING.TEAM", "marketing.team"):
        response = client.post("/auth/token", data={"username": spelling, "password": GOOD_PASSWORD})
        assert response.status_code == 200, spelling


def test_a_username_differing_only_by_spaces_is_refused(
    client: TestClient, db: Session, admin_headers: dict[str, str]
) -> None:
    assert _create(client, admin_headers, username="gina").status_code == 201
    for name in ("gina ", " gina", "gina\t", " GINA "):
        body = assert_error(_create(client, admin_headers, username=name, email="other@example.com"), 409, "conflict")
        assert body["detail"][0]["loc"] == ["body", "username"]
    body = assert_error(_create(client, admin_headers, username="gi na"), 422, "validation_error")
    assert body["detail"][0]["loc"][:2] == ["body", "username"]
    assert count(db, User) == 2


def test_normalize_username_is_idempotent() -> None:
    for raw in ["Gina", " gina ", "\uff27\uff49\uff4e\uff41", "STRASSE", "Stra\u00dfe", "\u212bngstr\u00f6m"]:
        once = normalize_username(raw)
        assert normalize_username(once) == once
    assert normalize_username("Stra\u00dfe") == normalize_username("STRASSE") == "strasse"


def test_a_password_is_taken_exactly_as_typed(client: TestClient, admin_headers: dict[str, str]) -> None:
    """Spaces around a password are part of it: the login form (never stripped) checks what was
    set. A password of 10 characters that would be 3 once stripped is accepted as the 10 it is."""
    password = "  spaced out  "
    body = {"username": "  Spacey ", "email": " spacey@example.com ", "password": password}
    created = client.post("/api/v1/users", json=body, headers=admin_headers)
    assert created.status_code == 201, created.text
    assert (created.json()["username"], created.json()["email"]) == ("spacey", "spacey@example.com")
    assert client.post("/auth/token", data={"username": "spacey", "password": password}).status_code == 200
    assert client.post("/auth/token", data={"username": "spacey", "password": password.strip()}).status_code == 401
    short = {"username": "tabby", "email": "tabby@example.com", "password": "abc" + "\u3000" * 7}
    assert client.post("/api/v1/users", json=short, headers=admin_headers).status_code == 201
