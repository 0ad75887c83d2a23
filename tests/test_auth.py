"""POST /auth/token, GET /auth/me and what makes a bearer token unacceptable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from jose import jwt
from sqlalchemy.orm import Session

from app.models import User
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error


def login(client, username: str, password: str = factories.PASSWORD):
    return client.post("/auth/token", data={"username": username, "password": password})


def test_login_returns_bearer_token_that_works_on_me(client, user: User) -> None:
    response = login(client, "alice")
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 60 * 60
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {
        "id": user.id,
        "username": "alice",
        "email": "alice@example.com",
        "is_admin": False,
        "is_active": True,
        "created_at": me.json()["created_at"],
    }
    assert "hashed_password" not in me.text


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong-password"), ("nobody", factories.PASSWORD)])
def test_wrong_credentials_are_401(client, user: User, username: str, password: str) -> None:
    body = assert_error(login(client, username, password), 401, "invalid_credentials")
    assert "password" not in str(body["detail"]).replace("username or password", "")


def test_login_form_missing_fields_is_422(client) -> None:
    assert_error(client.post("/auth/token", data={"username": "alice"}), 422, "validation_error")


def test_inactive_user_cannot_log_in_or_use_token(client, db: Session, settings: Settings) -> None:
    inactive = factories.make_user(db, username="sleepy", is_active=False)
    assert_error(login(client, "sleepy"), 401, "invalid_credentials")  # never confirms the password
    assert_error(client.get("/auth/me", headers=factories.headers_for(settings, inactive)), 403, "inactive_user")


def test_me_without_token_is_401(client) -> None:
    response = client.get("/auth/me")
    assert_error(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


def _claims(user: User, **overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": str(user.id),
        "ver": user.token_version,
        "typ": "access",
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    claims.update(overrides)
    return claims


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, object]) -> str:
    import json

    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda s, u: jwt.encode(_claims(u, exp=1_000_000), s.secret_key(), algorithm="HS256"), id="expired"
        ),
        pytest.param(
            lambda s, u: jwt.encode(_claims(u), "another-secret-" + "y" * 40, algorithm="HS256"), id="wrong-key"
        ),
        pytest.param(lambda s, u: _unsigned(_claims(u)), id="alg-none"),
        pytest.param(lambda s, u: jwt.encode(_claims(u), s.secret_key(), algorithm="HS512"), id="other-alg"),
        pytest.param(lambda s, u: "not.a.jwt", id="malformed"),
        pytest.param(lambda s, u: "x" * 5000, id="huge"),
        pytest.param(
            lambda s, u: jwt.encode(_claims(u, sub="999999"), s.secret_key(), algorithm="HS256"), id="unknown-user"
        ),
        pytest.param(
            lambda s, u: jwt.encode(_claims(u, sub="-1"), s.secret_key(), algorithm="HS256"), id="negative-sub"
        ),
        pytest.param(
            lambda s, u: jwt.encode(_claims(u, sub="9" * 40), s.secret_key(), algorithm="HS256"), id="huge-sub"
        ),
        pytest.param(
            lambda s, u: jwt.encode(_claims(u, ver=u.token_version + 1), s.secret_key(), algorithm="HS256"),
            id="stale-version",
        ),
        pytest.param(
            lambda s, u: jwt.encode(_claims(u, typ="refresh"), s.secret_key(), algorithm="HS256"), id="wrong-type"
        ),
        pytest.param(
            lambda s, u: jwt.encode(
                _claims(u, nbf=int(datetime.now(UTC).timestamp()) + 3600), s.secret_key(), algorithm="HS256"
            ),
            id="not-yet-valid",
        ),
        pytest.param(
            lambda s, u: jwt.encode(
                {k: v for k, v in _claims(u).items() if k != "exp"}, s.secret_key(), algorithm="HS256"
            ),
            id="no-exp",
        ),
    ],
)
def test_unacceptable_tokens_are_401(client, settings: Settings, user: User, make_token) -> None:
    response = client.get("/auth/me", headers={"Authorization": f"Bearer {make_token(settings, user)}"})
    assert_error(response, 401, "invalid_token")


def test_valid_handmade_token_is_accepted(client, settings: Settings, user: User) -> None:
    token = jwt.encode(_claims(user), settings.secret_key(), algorithm="HS256")
    assert client.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_deleted_user_token_is_401(client, db: Session, settings: Settings, admin_headers: dict[str, str]) -> None:
    victim = factories.make_user(db, username="gone")
    victim_headers = factories.headers_for(settings, victim)
    assert client.delete(f"/api/v1/users/{victim.id}", headers=admin_headers).status_code == 204
    assert_error(client.get("/auth/me", headers=victim_headers), 401, "invalid_token")


def test_password_change_invalidates_old_tokens(
    client, user: User, headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    response = client.patch(
        f"/api/v1/users/{user.id}", json={"password": "a-brand-new-password"}, headers=admin_headers
    )
    assert response.status_code == 200
    assert_error(client.get("/auth/me", headers=headers), 401, "invalid_token")
    assert login(client, "alice", "a-brand-new-password").status_code == 200
    assert_error(login(client, "alice"), 401)
