"""Production refuses insecure settings beyond missing secrets: a database without a password,
the example Fernet key among the keys still accepted, /metrics open to anyone; METRICS_BIND."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from app.settings import EXAMPLE_FERNET_KEY, Settings, check_and_fill_secrets
from tests.test_settings import (
    STRONG_DB_PASSWORD,
    STRONG_FERNET,
    STRONG_METRICS_TOKEN,
    clean_env,
    prod,
    refused,
)

__all__ = ["clean_env"]  # the autouse fixture: no PixelTracking variable leaks in


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://root@db.internal/pixeltrack",
        "mysql+pymysql://root@db.internal:3306/pixeltrack?charset=utf8mb4",
        "mysql+pymysql://root:@db.internal/pixeltrack",
        "mysql+pymysql://db.internal/pixeltrack",
    ],
    ids=["root-no-password", "with-port-and-query", "empty-password", "no-user"],
)
def test_production_refuses_a_database_url_without_a_password(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    message = refused(lambda: prod(monkeypatch, DATABASE_URL=url))
    assert "DATABASE_URL" in message
    assert "db.internal" not in message, "the URL itself is never echoed"


def test_production_refuses_mysql_variables_without_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(lambda: prod(monkeypatch, MYSQL_HOST="db.internal", MYSQL_USER="root"))
    assert "MYSQL_PASSWORD" in message


def test_production_accepts_a_database_url_with_a_strong_password(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"mysql+pymysql://pixeltrack:{STRONG_DB_PASSWORD}@db.internal/pixeltrack"
    assert check_and_fill_secrets(prod(monkeypatch, DATABASE_URL=url)).sqlalchemy_url == url


@pytest.mark.parametrize(
    "old_keys",
    [
        EXAMPLE_FERNET_KEY,
        f"{Fernet.generate_key().decode()},{EXAMPLE_FERNET_KEY}",
        f" {EXAMPLE_FERNET_KEY} ,{Fernet.generate_key().decode()}",
    ],
    ids=["alone", "second", "first-with-spaces"],
)
def test_production_refuses_the_example_fernet_key_among_old_keys(
    monkeypatch: pytest.MonkeyPatch, old_keys: str
) -> None:
    message = refused(lambda: prod(monkeypatch, FERNET_OLD_KEYS=old_keys), EXAMPLE_FERNET_KEY)
    assert "FERNET_OLD_KEYS" in message


def test_production_accepts_real_old_fernet_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    old = Fernet.generate_key().decode()
    settings = check_and_fill_secrets(prod(monkeypatch, FERNET_OLD_KEYS=old))
    assert settings.fernet_keys() == [STRONG_FERNET, old]


def test_development_still_accepts_the_example_old_key(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = check_and_fill_secrets(prod(monkeypatch, APP_ENV="development", FERNET_OLD_KEYS=EXAMPLE_FERNET_KEY))
    assert settings.fernet_keys()[1] == EXAMPLE_FERNET_KEY


# /metrics: a bearer token, or a private listener.


def test_production_refuses_public_metrics_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(lambda: prod(monkeypatch, METRICS_TOKEN=None))
    assert "METRICS_TOKEN" in message


@pytest.mark.parametrize("token", ["change-me", "short-token", "   "], ids=["example", "short", "blank"])
def test_production_refuses_a_weak_metrics_token(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    message = refused(lambda: prod(monkeypatch, METRICS_TOKEN=token), *([token] if token.strip() else []))
    assert "METRICS_TOKEN" in message


def test_production_accepts_a_private_metrics_listener_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = check_and_fill_secrets(prod(monkeypatch, METRICS_TOKEN=None, METRICS_BIND="127.0.0.1:9101"))
    assert settings.metrics_address == ("127.0.0.1", 9101)
    assert settings.metrics_token is None


def test_production_accepts_a_strong_metrics_token(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = check_and_fill_secrets(prod(monkeypatch))
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == STRONG_METRICS_TOKEN


@pytest.mark.parametrize(
    ("bind", "address"),
    [
        ("0.0.0.0:9101", ("0.0.0.0", 9101)),  # noqa: S104
        ("[::1]:9101", ("::1", 9101)),
        ("metrics.internal:80", ("metrics.internal", 80)),
    ],
)
def test_metrics_bind_is_host_and_port(monkeypatch: pytest.MonkeyPatch, bind: str, address: tuple[str, int]) -> None:
    assert prod(monkeypatch, METRICS_BIND=bind).metrics_address == address


@pytest.mark.parametrize("bind", ["9101", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":9101", "host:port"])
def test_invalid_metrics_bind_is_a_validation_error(monkeypatch: pytest.MonkeyPatch, bind: str) -> None:
    monkeypatch.setenv("METRICS_BIND", bind)
    with pytest.raises(ValidationError, match="METRICS_BIND"):
        Settings(_env_file=None)
