"""`pixeltrack create-admin`: the API's validation, human messages, exit 2 (issue #10, item 17)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from app import cli as cli_module
from app.models import User
from app.security import verify_password
from app.settings import get_settings

PASSWORD = "admin-password-123"
_OURS = ("MYSQL_", "REDIS_", "API_", "FERNET", "FIRST_ADMIN", "DATABASE_URL", "APP_ENV", "SECRETS_FILE", "SQLITE_")


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in [n for n in os.environ if n.upper().startswith(_OURS)]:
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("API_SECRET_KEY", "cli-test-secret-" + "s" * 40)
    monkeypatch.setenv("FERNET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.fixture
def cli(db_url: str, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> Run:
        capsys.readouterr()
        try:
            code = cli_module.main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def users(url: str) -> list[User]:
    engine = create_engine(url)
    try:
        with Session(engine) as db:
            return list(db.scalars(select(User).order_by(User.id)))
    finally:
        engine.dispose()


def _assert_human(text: str) -> None:
    assert "[{" not in text, text  # no raw Python list / dict
    assert "'loc'" not in text
    assert "Traceback" not in text


def test_create_admin_twice_says_the_name_exists_in_words(cli: Any, db_url: str) -> None:
    assert cli("create-admin", "--username", "boss", "--password", PASSWORD).code == 0
    for name in ("boss", "BOSS", " Boss "):
        again = cli("create-admin", "--username", name, "--password", "another-password-1")
        assert again.code == 1
        assert again.err.strip() == "pixeltrack: a user named 'boss' already exists"
        _assert_human(again.err)
    [admin] = users(db_url)
    assert verify_password(PASSWORD, admin.hashed_password)


@pytest.mark.parametrize(
    ("args", "option", "words"),
    [
        pytest.param(["--email", "not-an-email"], "--email", "not a valid email address", id="email-no-at"),
        pytest.param(["--email", "a@b@example.com"], "--email", "not a valid email address", id="email-two-ats"),
        pytest.param(["--email", "x" * 250 + "@example.com"], "--email", "", id="email-too-long"),
        pytest.param(["--password", "short"], "--password", "at least 10 characters", id="password-short"),
        pytest.param(["--password", "1234567890"], "--password", "too common", id="password-common"),
        pytest.param(["--username", "bad name"], "--username", "letters, digits", id="username-space"),
        pytest.param(["--username", "ab"], "--username", "at least 3 characters", id="username-short"),
        pytest.param(["--username", "u" * 65], "--username", "at most 64 characters", id="username-long"),
    ],
)
def test_invalid_input_is_refused_like_the_api_with_exit_2(
    cli: Any, db_url: str, args: list[str], option: str, words: str
) -> None:
    argv = {"--username": "boss", "--password": PASSWORD}
    argv.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = cli("create-admin", *(x for pair in argv.items() for x in pair))
    assert result.code == 2, result
    assert result.err.startswith(f"pixeltrack: {option}: "), result.err
    assert words in result.err
    _assert_human(result.err)
    assert PASSWORD not in result.err
    assert users(db_url) == []


def test_several_problems_are_one_line_each(cli: Any, db_url: str) -> None:
    result = cli("create-admin", "--username", "a b", "--email", "nope", "--password", "short")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["--username", "--email", "--password"]


def test_username_and_email_are_stored_as_the_api_stores_them(cli: Any, db_url: str) -> None:
    result = cli("create-admin", "--username", "Big.Boss", "--password", PASSWORD)
    assert result.code == 0, result.err
    assert "admin 'big.boss' created" in result.out
    [admin] = users(db_url)
    assert (admin.username, admin.email, admin.is_admin) == ("big.boss", "big.boss@localhost.localdomain", True)
