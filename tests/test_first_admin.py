"""FIRST_ADMIN_* creates an admin only when no admin exists at all (issue #10, item 24)."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.main import create_app
from app.models import User
from app.settings import Settings, StartupError, check_and_fill_secrets
from tests import factories
from tests.helpers import count

FIRST_PASSWORD = "first-admin-password-1"


def _start(settings: Settings, **overrides: object) -> None:
    """One application start (its lifespan runs the first-admin step), then shutdown."""
    first = {"first_admin_username": "bootstrap", "first_admin_password": SecretStr(FIRST_PASSWORD)}
    with TestClient(create_app(settings.model_copy(update={**first, **overrides}))):
        pass


def test_first_start_creates_the_admin_who_can_log_in(settings: Settings, engine: Engine, db: Session) -> None:
    _start(settings)
    [admin] = db.scalars(select(User)).all()
    assert (admin.username, admin.is_admin, admin.is_active) == ("bootstrap", True, True)
    with TestClient(create_app(settings)) as client:
        response = client.post("/auth/token", data={"username": "bootstrap", "password": FIRST_PASSWORD})
        assert response.status_code == 200, response.text


def test_a_deleted_bootstrap_admin_does_not_come_back_on_restart(
    settings: Settings, engine: Engine, db: Session
) -> None:
    _start(settings)
    bootstrap = db.scalars(select(User).where(User.username == "bootstrap")).one()
    successor = factories.make_user(db, username="successor", is_admin=True)
    db.delete(bootstrap)
    db.commit()

    _start(settings)  # restart with the same FIRST_ADMIN_* variables

    assert count(db, User, User.username == "bootstrap") == 0
    assert db.scalars(select(User.username)).all() == [successor.username]


def test_no_first_admin_while_any_admin_exists_even_inactive(settings: Settings, engine: Engine, db: Session) -> None:
    factories.make_user(db, username="old_admin", is_admin=True, is_active=False)
    _start(settings)
    assert count(db, User) == 1
    assert count(db, User, User.username == "bootstrap") == 0


def test_first_admin_name_of_an_existing_user_is_left_alone(
    settings: Settings, engine: Engine, db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    user = factories.make_user(db, username="bootstrap")
    with caplog.at_level(logging.WARNING, logger="pixeltrack.users"):
        _start(settings)
    db.expire_all()
    row = db.get_one(User, user.id)
    assert (row.is_admin, count(db, User)) == (False, 1)
    assert "existing non-admin user" in caplog.text
    assert FIRST_PASSWORD not in caplog.text


def test_first_admin_username_is_stored_normalised(settings: Settings, engine: Engine, db: Session) -> None:
    _start(settings, first_admin_username="Boot.Strap")
    assert db.scalars(select(User.username)).all() == ["boot.strap"]


def test_weak_first_admin_password_in_development_creates_the_admin_with_a_warning(
    settings: Settings, engine: Engine, db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pixeltrack.users"):
        _start(settings, first_admin_password=SecretStr("change-me"))
    assert count(db, User, User.username == "bootstrap", is_admin=True) == 1
    assert "does not meet the password policy" in caplog.text
    assert "change-me" not in caplog.text


@pytest.mark.parametrize("weak", ["change-me", "short-pw", "1234567890", "Qwertyuiop", "basketball"])
def test_weak_first_admin_password_refuses_production(settings: Settings, weak: str) -> None:
    production = settings.model_copy(
        update={
            "app_env": "production",
            "first_admin_username": "bootstrap",
            "first_admin_password": SecretStr(weak),
        }
    )
    with pytest.raises(StartupError, match="FIRST_ADMIN_PASSWORD") as raised:
        check_and_fill_secrets(production)
    assert weak not in str(raised.value)


def test_strong_first_admin_password_passes_the_production_check(settings: Settings) -> None:
    production = settings.model_copy(
        update={
            "app_env": "production",
            "first_admin_password": SecretStr(FIRST_PASSWORD),
            "metrics_token": SecretStr("metrics-token-" + "m" * 24),
            # Not the test server's password-less MariaDB URL, which production refuses.
            "database_url": "sqlite:///./pixeltrack.db",
        }
    )
    check_and_fill_secrets(production)
