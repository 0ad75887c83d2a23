"""app.settings: where the database and Redis come from, and which secrets production refuses.

Every test starts from an environment without any PixelTracking variable (`clean_env`) and
builds `Settings(_env_file=None, ...)`, so neither the developer's shell nor a `.env` leaks in.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from app import settings as settings_module
from app.settings import EXAMPLE_FERNET_KEY, Settings, StartupError, check_and_fill_secrets, get_settings

STRONG_KEY = "k3y-" + secrets.token_urlsafe(48)
STRONG_FERNET = Fernet.generate_key().decode()
STRONG_DB_PASSWORD = "db-" + secrets.token_urlsafe(24)
STRONG_METRICS_TOKEN = "mt-" + secrets.token_urlsafe(24)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No PixelTracking variable in the environment; secrets file in tmp_path; no cached settings."""
    names = {name.upper() for name in Settings.model_fields} | {"DATABASE_URL", "REDIS_URL", "APP_ENV"}
    for name in list(os.environ):
        if name.upper() in names or name.upper().startswith(("MYSQL_", "REDIS_", "API_", "FERNET", "FIRST_ADMIN")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRETS_FILE", str(tmp_path / "secrets.json"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def make(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)


def prod(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> Settings:
    """Production settings from the environment, strong secrets unless overridden (None: unset)."""
    values = {
        "APP_ENV": "production",
        "API_SECRET_KEY": STRONG_KEY,
        "FERNET_KEY": STRONG_FERNET,
        "METRICS_TOKEN": STRONG_METRICS_TOKEN,
        **env,
    }
    for name, value in values.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return make()


def refused(build: Callable[[], Settings], *secret_values: str) -> str:
    """The StartupError raised while building the settings (their validator: no such Settings exist)."""
    with pytest.raises(StartupError) as info:
        build()
    message = str(info.value)
    assert message.startswith("refusing to start")
    for value in secret_values:
        assert value not in message, "the error message echoes a secret"
        assert value not in repr(info.value)
    return message


# Database URL.


def test_database_url_overrides_mysql_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_HOST", "db.internal")
    monkeypatch.setenv("MYSQL_PASSWORD", "ignored-password")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./override.db")
    settings = make()
    assert settings.sqlalchemy_url == "sqlite:///./override.db"
    assert settings.uses_sqlite


def test_database_url_mysql_is_used_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "mysql+pymysql://app:pw@other-host:3307/appdb?charset=utf8mb4"
    monkeypatch.setenv("MYSQL_HOST", "db.internal")
    monkeypatch.setenv("MYSQL_DATABASE", "not-this-one")
    monkeypatch.setenv("DATABASE_URL", url)
    settings = make()
    assert settings.sqlalchemy_url == url
    assert not settings.uses_sqlite


@pytest.mark.parametrize(
    "password",
    ["plain-password", "p@ss:w/rd?#%&=+", "pass word", "ü€😀 x", "a+b", "%41%42"],
    ids=["plain", "url-specials", "space", "non-ascii", "plus", "percent-escapes"],
)
def test_mysql_host_builds_a_pymysql_url(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    monkeypatch.setenv("MYSQL_HOST", "db.internal")
    monkeypatch.setenv("MYSQL_PORT", "3307")
    monkeypatch.setenv("MYSQL_USER", "pix user")
    monkeypatch.setenv("MYSQL_PASSWORD", password)
    monkeypatch.setenv("MYSQL_DATABASE", "tracking")
    settings = make()
    url = settings.sqlalchemy_url
    assert url.startswith("mysql+pymysql://")
    assert url.endswith("@db.internal:3307/tracking?charset=utf8mb4")
    parsed = make_url(url)  # what SQLAlchemy (and so pymysql) will actually use
    assert parsed.drivername == "mysql+pymysql"
    assert parsed.username == "pix user"
    assert parsed.password == password
    assert (parsed.host, parsed.port, parsed.database) == ("db.internal", 3307, "tracking")
    assert parsed.query == {"charset": "utf8mb4"}
    assert not settings.uses_sqlite


def test_mysql_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_HOST", "mysql")
    parsed = make_url(make().sqlalchemy_url)
    assert (parsed.username, parsed.port, parsed.database) == ("pixeltrack", 3306, "pixeltrack")
    assert parsed.query == {"charset": "utf8mb4"}


@pytest.mark.parametrize("empty", [None, ""], ids=["unset", "empty-as-in-env-example"])
def test_no_mysql_configured_means_sqlite(monkeypatch: pytest.MonkeyPatch, empty: str | None) -> None:
    if empty is not None:
        monkeypatch.setenv("DATABASE_URL", empty)
        monkeypatch.setenv("MYSQL_HOST", empty)
    settings = make()
    assert settings.sqlalchemy_url == "sqlite:///./pixeltrack.db"
    assert settings.uses_sqlite
    monkeypatch.setenv("SQLITE_PATH", "/data/pt.db")
    assert make().sqlalchemy_url == "sqlite:////data/pt.db"


def test_env_file_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("MYSQL_HOST=from-file\nMYSQL_PASSWORD=file-password\nPUBLIC_BASE_URL=https://t.example/\n")
    from_file = Settings(_env_file=env_file)
    assert make_url(from_file.sqlalchemy_url).host == "from-file"
    assert from_file.public_base_url == "https://t.example"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./env-wins.db")
    assert Settings(_env_file=env_file).sqlalchemy_url == "sqlite:///./env-wins.db"


# Redis.


def test_redis_url_overrides_redis_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "redis.internal")
    monkeypatch.setenv("REDIS_PASSWORD", "ignored")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6390/3")
    assert make().redis_dsn == "redis://cache:6390/3"


@pytest.mark.parametrize("password", ["", "simple", "p@ss w/rd:#?+"], ids=["none", "simple", "specials"])
def test_redis_host_builds_a_url(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    monkeypatch.setenv("REDIS_HOST", "redis.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    if password:
        monkeypatch.setenv("REDIS_PASSWORD", password)
    dsn = make().redis_dsn
    assert dsn is not None
    parsed = urlparse(dsn)
    assert (parsed.scheme, parsed.hostname, parsed.port, parsed.path) == ("redis", "redis.internal", 6380, "/0")
    # redis-py decodes the password with urllib's unquote.
    assert (unquote(parsed.password) if parsed.password else "") == password


@pytest.mark.parametrize("empty", [None, ""], ids=["unset", "empty"])
def test_no_redis_configured_means_none(monkeypatch: pytest.MonkeyPatch, empty: str | None) -> None:
    if empty is not None:
        monkeypatch.setenv("REDIS_URL", empty)
        monkeypatch.setenv("REDIS_HOST", empty)
    assert make().redis_dsn is None


# Production refuses missing and example secrets.


def test_production_with_strong_secrets_starts(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    settings = check_and_fill_secrets(prod(monkeypatch))
    assert settings.secret_key() == STRONG_KEY
    assert settings.fernet_keys() == [STRONG_FERNET]
    assert not (clean_env / "secrets.json").exists(), "production must not generate secrets"


def test_production_with_mysql_and_strong_password_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = prod(
        monkeypatch, MYSQL_HOST="mysql", MYSQL_PASSWORD=STRONG_DB_PASSWORD, FIRST_ADMIN_PASSWORD="a-strong-admin-pw"
    )
    assert check_and_fill_secrets(settings).sqlalchemy_url.startswith("mysql+pymysql://")


@pytest.mark.parametrize(
    ("env", "mentions", "secret"),
    [
        pytest.param({"API_SECRET_KEY": None}, "API_SECRET_KEY", None, id="api-key-missing"),
        pytest.param(
            {"API_SECRET_KEY": "change-me-to-a-long-random-string"},
            "API_SECRET_KEY",
            "change-me-to-a-long-random-string",
            id="api-key-example",
        ),
        pytest.param({"API_SECRET_KEY": "change-me"}, "API_SECRET_KEY", "change-me", id="api-key-change-me"),
        pytest.param({"API_SECRET_KEY": "CHANGEME"}, "API_SECRET_KEY", "CHANGEME", id="api-key-changeme-upper"),
        pytest.param(
            {"API_SECRET_KEY": "Sh0rt-but-real-9f2c"}, "API_SECRET_KEY", "Sh0rt-but-real-9f2c", id="api-key-short"
        ),
        pytest.param({"API_SECRET_KEY": "z" * 31}, "API_SECRET_KEY", "z" * 31, id="api-key-31-chars"),
        pytest.param({"FERNET_KEY": None}, "FERNET_KEY", None, id="fernet-missing"),
        pytest.param({"FERNET_KEY": EXAMPLE_FERNET_KEY}, "FERNET_KEY", EXAMPLE_FERNET_KEY, id="fernet-example"),
        pytest.param({"MYSQL_HOST": "mysql"}, "MYSQL_PASSWORD", None, id="mysql-password-missing"),
        pytest.param(
            {"MYSQL_HOST": "mysql", "MYSQL_PASSWORD": "change-me"}, "MYSQL_PASSWORD", "change-me", id="mysql-example"
        ),
        pytest.param(
            {"MYSQL_HOST": "mysql", "MYSQL_PASSWORD": "password"}, "MYSQL_PASSWORD", "password", id="mysql-password"
        ),
        pytest.param({"MYSQL_HOST": "mysql", "MYSQL_PASSWORD": "Xy7#q"}, "MYSQL_PASSWORD", "Xy7#q", id="mysql-short"),
        pytest.param(
            {"DATABASE_URL": "mysql+pymysql://pixeltrack:secret@127.0.0.1:3306/pixeltrack?charset=utf8mb4"},
            "DATABASE_URL",
            "secret",
            id="database-url-example-password",
        ),
        pytest.param(
            {"FIRST_ADMIN_PASSWORD": "change-me"}, "FIRST_ADMIN_PASSWORD", "change-me", id="first-admin-example"
        ),
    ],
)
def test_production_refuses_missing_or_example_secrets(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None], mentions: str, secret: str | None
) -> None:
    message = refused(lambda: prod(monkeypatch, **env), *([secret] if secret else []))
    assert mentions in message


def test_production_lists_every_problem_at_once_without_values(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"API_SECRET_KEY": "change-me", "FERNET_KEY": EXAMPLE_FERNET_KEY, "MYSQL_PASSWORD": "changeme"}
    message = refused(lambda: prod(monkeypatch, MYSQL_HOST="mysql", **env), EXAMPLE_FERNET_KEY, "changeme", "change-me")
    for name in ("API_SECRET_KEY", "FERNET_KEY", "MYSQL_PASSWORD"):
        assert name in message


def test_production_refusal_through_get_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("FERNET_KEY", EXAMPLE_FERNET_KEY)
    with pytest.raises(StartupError, match="refusing to start"):
        get_settings()


def test_production_settings_repr_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = check_and_fill_secrets(prod(monkeypatch, MYSQL_HOST="mysql", MYSQL_PASSWORD=STRONG_DB_PASSWORD))
    text = repr(settings) + str(settings) + settings.model_dump_json()
    for value in (STRONG_KEY, STRONG_FERNET, STRONG_DB_PASSWORD):
        assert value not in text


# Development generates missing secrets once and keeps them.


@pytest.mark.parametrize("app_env", ["development", "test"])
def test_development_generates_secrets_once_and_reuses_them(clean_env: Path, app_env: str) -> None:
    secrets_file = clean_env / "secrets.json"
    first = check_and_fill_secrets(make(app_env=app_env))
    assert secrets_file.exists()
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    key, fernet = first.secret_key(), first.fernet_keys()[0]
    assert len(key) >= 32
    Fernet(fernet)  # a valid key
    stored = json.loads(secrets_file.read_text())
    assert stored == {"api_secret_key": key, "fernet_key": fernet}

    second = check_and_fill_secrets(make(app_env=app_env))
    assert (second.secret_key(), second.fernet_keys()[0]) == (key, fernet)
    assert json.loads(secrets_file.read_text()) == stored
    assert [p.name for p in clean_env.iterdir() if p.name.startswith("secrets.json")] == ["secrets.json"]


def test_development_keeps_given_secrets_and_fills_only_the_missing_one(clean_env: Path) -> None:
    settings = check_and_fill_secrets(make(api_secret_key=STRONG_KEY))
    assert settings.secret_key() == STRONG_KEY
    generated = json.loads((clean_env / "secrets.json").read_text())
    assert settings.fernet_keys() == [generated["fernet_key"]]
    assert generated["api_secret_key"] != STRONG_KEY


def test_development_with_both_secrets_writes_no_file(clean_env: Path) -> None:
    settings = check_and_fill_secrets(make(api_secret_key=STRONG_KEY, fernet_key=STRONG_FERNET))
    assert (settings.secret_key(), settings.fernet_keys()) == (STRONG_KEY, [STRONG_FERNET])
    assert not (clean_env / "secrets.json").exists()


def test_get_settings_is_cached_and_fills_secrets(clean_env: Path) -> None:
    first = get_settings()
    assert first is get_settings()
    assert first.secret_key() == json.loads((clean_env / "secrets.json").read_text())["api_secret_key"]
    get_settings.cache_clear()
    assert get_settings().secret_key() == first.secret_key()


def test_development_accepts_example_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only production refuses example secrets; a developer can start from .env.example."""
    monkeypatch.setenv("API_SECRET_KEY", "change-me")
    monkeypatch.setenv("FERNET_KEY", EXAMPLE_FERNET_KEY)
    settings = check_and_fill_secrets(make())
    assert settings.secret_key() == "change-me"


# Invalid values.


@pytest.mark.parametrize("app_env", ["development", "production"])
@pytest.mark.parametrize(
    "key",
    [
        "not-a-fernet-key",
        "c2hvcnQ=",  # base64 of 5 bytes
        Fernet.generate_key().decode()[:-2],
        "!" * 44,
    ],
    ids=["word", "short-base64", "truncated", "not-base64"],
)
def test_invalid_fernet_key_is_refused(monkeypatch: pytest.MonkeyPatch, app_env: str, key: str) -> None:
    message = refused(lambda: prod(monkeypatch, APP_ENV=app_env, FERNET_KEY=key), key)
    assert "FERNET_KEY" in message


@pytest.mark.parametrize("blank", ["", " ", "\t"], ids=["empty", "space", "tab"])
@pytest.mark.parametrize("name", ["API_SECRET_KEY", "FERNET_KEY"])
def test_blank_secret_is_unset(monkeypatch: pytest.MonkeyPatch, clean_env: Path, name: str, blank: str) -> None:
    """`API_SECRET_KEY=` is not an (empty) key: development generates one, production refuses."""
    message = refused(lambda: prod(monkeypatch, **{name: blank}))
    assert name in message
    monkeypatch.setenv("APP_ENV", "development")
    settings = check_and_fill_secrets(make())
    generated = json.loads((clean_env / "secrets.json").read_text())
    if name == "API_SECRET_KEY":
        assert settings.secret_key() == generated["api_secret_key"]
    else:
        assert settings.fernet_keys() == [generated["fernet_key"]]


def test_invalid_old_fernet_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = "old-and-broken-key"
    monkeypatch.setenv("FERNET_OLD_KEYS", f"{Fernet.generate_key().decode()}, {bad}")
    message = refused(lambda: make(api_secret_key=STRONG_KEY, fernet_key=STRONG_FERNET), bad)
    assert "FERNET_OLD_KEYS" in message


def test_old_fernet_keys_are_kept_after_the_current_one(monkeypatch: pytest.MonkeyPatch) -> None:
    old1, old2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("FERNET_OLD_KEYS", f" {old1} ,{old2},")
    settings = check_and_fill_secrets(make(api_secret_key=STRONG_KEY, fernet_key=STRONG_FERNET))
    assert settings.fernet_keys() == [STRONG_FERNET, old1, old2]


@pytest.mark.parametrize("algorithm", ["none", "None", "RS256", "ES256", "hs256", "HS1024", ""])
def test_jwt_algorithm_outside_hs_family_is_a_validation_error(monkeypatch: pytest.MonkeyPatch, algorithm: str) -> None:
    monkeypatch.setenv("API_SECRET_ALGORITHM", algorithm)
    with pytest.raises(ValidationError, match="API_SECRET_ALGORITHM"):
        make()


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_hs_algorithms_are_accepted(monkeypatch: pytest.MonkeyPatch, algorithm: str) -> None:
    monkeypatch.setenv("API_SECRET_ALGORITHM", algorithm)
    assert make().api_secret_algorithm == algorithm


def test_default_algorithm_is_hs256() -> None:
    assert make().api_secret_algorithm == "HS256"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("APP_ENV", "staging"),
        ("MYSQL_PORT", "not-a-port"),
        ("DEDUPE_WINDOW_SECONDS", "-1"),
        ("API_ACCESS_TOKEN_EXPIRE_MINUTES", "0"),
    ],
)
def test_invalid_values_are_validation_errors(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        make()


def test_public_base_url_loses_its_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://track.example.com/")
    assert make().public_base_url == "https://track.example.com"


def test_module_exposes_the_documented_example_fernet_key() -> None:
    # The example key in .env.example is the one production refuses.
    env_example = Path(settings_module.__file__).resolve().parent.parent / ".env.example"
    assert f"FERNET_KEY={EXAMPLE_FERNET_KEY}" in env_example.read_text()
