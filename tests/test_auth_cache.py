"""The authentication cache (app/authn.py): credentials are read from the database once per few
seconds, not once per request, and revocation stays prompt: at once for a change made through
the API (in every process, with Redis), within CACHE_SECONDS for one made by hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, event, update
from sqlalchemy.orm import Session

from app.authn import CACHE_SECONDS, Authenticator
from app.clients import async_redis
from app.errors import Forbidden, Unauthorized
from app.models import ApiKey, User
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error
from tests.support.app_state import app_state


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _poll(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _user_reads(engine: Engine) -> tuple[list[str], Callable[[], None]]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM users" in statement or "FROM api_keys" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    return seen, lambda: event.remove(engine, "before_cursor_execute", note)


def test_credentials_are_read_once_not_per_request(
    client: TestClient, db: Session, user: User, headers: dict[str, str]
) -> None:
    _, key = factories.make_api_key(db, user)
    reads, stop = _user_reads(app_state(client).engine)
    try:
        for _ in range(10):
            assert client.get("/auth/me", headers=headers).status_code == 200
            assert client.get("/auth/me", headers=_bearer(key)).status_code == 200
    finally:
        stop()
    # One read of the user (its JWT's first use) and one of the key with its owner's row cached:
    # at most one of each per CACHE_SECONDS on a slow machine.
    assert 2 <= len(reads) <= 4, reads


def test_a_password_change_refuses_the_old_token_at_once(
    client: TestClient, user: User, headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    assert client.get("/auth/me", headers=headers).status_code == 200  # cached
    changed = client.patch(f"/api/v1/users/{user.id}", json={"password": "a-new-long-password"}, headers=admin_headers)
    assert changed.status_code == 200
    assert_error(client.get("/auth/me", headers=headers), 401, "invalid_token")


def test_lost_admin_rights_apply_to_the_next_request(
    client: TestClient, settings: Settings, db: Session, admin: User, admin_headers: dict[str, str]
) -> None:
    other_admin = factories.make_user(db, username="second_admin", is_admin=True)
    _, key = factories.make_api_key(db, admin)
    assert client.get("/api/v1/users", headers=_bearer(key)).status_code == 200  # cached as an admin
    demoted = client.patch(
        f"/api/v1/users/{admin.id}", json={"is_admin": False}, headers=factories.headers_for(settings, other_admin)
    )
    assert demoted.status_code == 200
    assert_error(client.get("/api/v1/users", headers=_bearer(key)), 403, "admin_required")
    assert_error(client.get("/api/v1/users", headers=admin_headers), 403, "admin_required")


def test_a_change_made_by_hand_applies_within_the_cache_lifetime(
    client: TestClient, db: Session, user: User, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    row, key = factories.make_api_key(db, user)
    auth: Authenticator = app_state(client).auth
    monkeypatch.setattr(auth, "ttl", 0.3)
    assert client.get("/auth/me", headers=headers).status_code == 200
    assert client.get("/auth/me", headers=_bearer(key)).status_code == 200
    db.execute(update(User).where(User.id == user.id).values(is_active=False))
    db.commit()
    _poll(lambda: client.get("/auth/me", headers=headers).status_code == 403, "the deactivation to apply")
    assert_error(client.get("/auth/me", headers=_bearer(key)), 403, "inactive_user")
    db.execute(update(User).where(User.id == user.id).values(is_active=True))
    db.execute(delete(ApiKey).where(ApiKey.id == row.id))
    db.commit()
    _poll(lambda: client.get("/auth/me", headers=_bearer(key)).status_code == 401, "the deleted key to be refused")
    _poll(lambda: client.get("/auth/me", headers=headers).status_code == 200, "the reactivation to apply")


def test_the_cache_lifetime_is_a_few_seconds() -> None:
    assert 0 < CACHE_SECONDS <= 5


def test_an_expired_jwt_is_refused_even_once_cached(
    client: TestClient, settings: Settings, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = factories.token_for(settings, user, expires_minutes=1)
    assert client.get("/auth/me", headers=_bearer(token)).status_code == 200  # decoded and cached
    auth: Authenticator = app_state(client).auth
    monkeypatch.setattr(auth, "clock", lambda: time.time() + 120)
    assert_error(client.get("/auth/me", headers=_bearer(token)), 401, "invalid_token")


def test_a_lookup_overtaken_by_a_revocation_is_not_cached(engine: Engine, settings: Settings, db: Session) -> None:
    """A lookup that read the row before a revocation committed must not cache that stale row."""
    user = factories.make_user(db, username="raced")
    _, key = factories.make_api_key(db, user)

    async def run() -> None:
        auth = Authenticator(engine, secret=settings.secret_key(), algorithm=settings.api_secret_algorithm, ttl=60)
        load = auth._load_key

        def load_then_revoked(digest: str) -> Any:
            found = load(digest)  # read while the key still existed...
            with Session(engine) as other:  # ...then revoked and committed before the answer is stored
                other.execute(delete(ApiKey).where(ApiKey.owner_id == user.id))
                other.commit()
            assert found is not None
            auth.forget_key(found.id)
            return found

        auth._load_key = load_then_revoked  # type: ignore[method-assign]
        await auth.authenticate(key)  # this request began before the revocation: it may pass
        auth._load_key = load  # type: ignore[method-assign]
        with pytest.raises(Unauthorized):
            await auth.authenticate(key)  # the next one reads again

    asyncio.run(run())


def test_a_revocation_reaches_every_process_through_redis(
    engine: Engine, settings: Settings, db: Session, redis_url: str
) -> None:
    user = factories.make_user(db, username="two-procs")
    row, key = factories.make_api_key(db, user)
    token = factories.token_for(settings, user)

    async def run() -> None:
        clients = [async_redis(redis_url), async_redis(redis_url)]
        one, two = (
            Authenticator(
                engine, secret=settings.secret_key(), algorithm=settings.api_secret_algorithm, redis=r, ttl=60
            )
            for r in clients
        )
        await one.start()
        await two.start()
        try:
            assert (await two.authenticate(key)).id == user.id  # cached for 60 s in "process" two
            assert (await two.authenticate(token)).id == user.id
            with Session(engine) as writer:  # what PATCH /users and DELETE /api-keys commit in "one"
                writer.execute(update(User).where(User.id == user.id).values(is_active=False))
                writer.execute(delete(ApiKey).where(ApiKey.id == row.id))
                writer.commit()
            assert (await two.authenticate(token)).id == user.id  # still cached: no message yet
            await one.key_revoked(row.id)
            await one.user_changed(user.id)
            deadline = time.monotonic() + 5
            while True:
                try:
                    await two.authenticate(token)
                except Forbidden:
                    break
                assert time.monotonic() < deadline, "the deactivation never reached the other process"
                await asyncio.sleep(0.01)
            with pytest.raises(Unauthorized):
                await two.authenticate(key)
        finally:
            await one.close()
            await two.close()
            for r in clients:
                await r.aclose()

    asyncio.run(run())
