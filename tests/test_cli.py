"""The `pixeltrack` command line, in-process (app.cli.main) and one real `serve` end to end.

Each test gets its own SQLite file in tmp_path (the database leg does not matter, so these
run on the SQLite leg only). Local helpers: `cli` (run main() and capture exit code and
output), `counts` (rows per table of that file), `serve` (start the real console script and
always stop it).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, func, inspect, select

from app import cli as cli_module
from app.models import Base, User
from app.security import verify_password
from app.settings import get_settings
from tests.support.processes import free_port
from tests.support.serve import Serve

pytestmark = pytest.mark.sqlite_only

SAMPLE = cli_module.DEFAULT_SAMPLE
PIXELTRACK = Path(sys.executable).with_name("pixeltrack")
APP_TABLES = {t.name for t in Base.metadata.sorted_tables}
ADMIN_PASSWORD = "admin-password-123"


def _sample_openings() -> int:
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return sum(
        len(pixel.get("openings", []))
        for campaign in data["campaigns"]
        for group in campaign.get("groups", [])
        for contact in group.get("contacts", [])
        for pixel in contact.get("pixels", [])
    )


def _clean_environ() -> dict[str, str]:
    """The current environment without any PixelTracking configuration."""
    prefixes: tuple[str, ...] = (
        "MYSQL_",
        "REDIS_",
        "API_",
        "FERNET",
        "FIRST_ADMIN",
        "DATABASE_URL",
        "APP_ENV",
        "SECRETS_FILE",
    )
    prefixes += ("SQLITE_PATH", "PUBLIC_BASE_URL", "DEDUPE_", "WORKER_", "ANONYMIZE_", "LOG_LEVEL")
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes)}


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in set(os.environ) - set(_clean_environ()):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
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
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            return {
                t.name: conn.scalar(select(func.count()).select_from(t)) or 0
                for t in Base.metadata.sorted_tables
                if t.name in present
            }
    finally:
        engine.dispose()


def users(url: str) -> list[User]:
    from sqlalchemy.orm import Session

    engine = create_engine(url)
    try:
        with Session(engine) as db:
            return list(db.scalars(select(User).order_by(User.id)))
    finally:
        engine.dispose()


# --help


SUBCOMMANDS = sorted(
    next(
        action.choices
        for action in cli_module.build_parser()._actions
        if isinstance(action.choices, dict) and "serve" in action.choices
    )
)


def test_top_level_help_lists_every_command(cli: Any) -> None:
    result = cli("--help")
    assert result.code == 0
    for name in SUBCOMMANDS:
        assert name in result.out
    for name in ("serve", "migrate", "create-admin", "load-sample", "gen-fernet-key", "worker"):
        assert name in SUBCOMMANDS


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(cli: Any, db_url: str, command: str) -> None:
    result = cli(command, "--help")
    assert result.code == 0, result.err
    assert command in result.out
    assert not Path(db_url.removeprefix("sqlite:///")).exists(), "--help touched the database"


def test_no_command_is_a_usage_error(cli: Any) -> None:
    result = cli()
    assert result.code == 2
    assert result.err.strip(), "says what is expected"


# gen-fernet-key


def test_gen_fernet_key_prints_a_valid_new_key(cli: Any) -> None:
    first, second = cli("gen-fernet-key"), cli("gen-fernet-key")
    assert first.code == second.code == 0
    key = first.out.strip()
    assert len(first.out.splitlines()) == 1
    token = Fernet(key.encode()).encrypt(b"pixel")
    assert Fernet(key.encode()).decrypt(token) == b"pixel"
    assert key != second.out.strip()


# migrate


def test_migrate_creates_the_tables_and_is_repeatable(cli: Any, db_url: str) -> None:
    result = cli("migrate")
    assert result.code == 0, result.err
    assert "database migrated" in result.out
    assert set(counts(db_url)) == APP_TABLES
    assert all(n == 0 for n in counts(db_url).values())
    assert cli("migrate").code == 0
    assert set(counts(db_url)) == APP_TABLES


# create-admin


def test_create_admin_creates_a_hashed_admin(cli: Any, db_url: str) -> None:
    result = cli("create-admin", "--username", "boss", "--password", ADMIN_PASSWORD, "--email", "boss@example.com")
    assert result.code == 0, result.err
    assert "admin 'boss' created" in result.out
    assert ADMIN_PASSWORD not in result.out + result.err
    [admin] = users(db_url)
    assert (admin.username, admin.email, admin.is_admin, admin.is_active) == ("boss", "boss@example.com", True, True)
    assert admin.hashed_password != ADMIN_PASSWORD
    assert admin.hashed_password.startswith("$argon2")
    assert verify_password(ADMIN_PASSWORD, admin.hashed_password)


def test_create_admin_duplicate_exits_1(cli: Any, db_url: str) -> None:
    assert cli("create-admin", "--username", "boss", "--password", ADMIN_PASSWORD).code == 0
    again = cli("create-admin", "--username", "boss", "--password", "another-password")
    assert again.code == 1
    assert "already exists" in again.err
    [admin] = users(db_url)
    assert verify_password(ADMIN_PASSWORD, admin.hashed_password)


def test_create_admin_rejects_a_short_password(cli: Any, db_url: str) -> None:
    result = cli("create-admin", "--username", "boss", "--password", "short")
    assert result.code == 2
    assert "10 characters" in result.err
    assert users(db_url) == []


def test_create_admin_without_password_and_terminal_generates_one(
    cli: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    result = cli("create-admin", "--username", "robot")
    assert result.code == 0, result.err
    match = re.search(r"with password: (\S+)", result.out)
    assert match, result.out
    [admin] = users(db_url)
    assert verify_password(match.group(1), admin.hashed_password)


# load-sample


def test_load_sample_loads_the_bundled_file_and_is_idempotent(cli: Any, db_url: str) -> None:
    assert cli("create-admin", "--username", "boss", "--password", ADMIN_PASSWORD).code == 0
    first = cli("load-sample")
    assert first.code == 0, first.err
    rows = counts(db_url)
    expected_openings = _sample_openings()
    assert expected_openings > 0
    assert rows["campaigns"] == 2
    assert rows["contacts"] == 50
    assert rows["pixels"] == 50
    assert rows["openings"] == expected_openings
    assert rows["groups"] >= 2
    assert f"2 campaigns (0 already present), 50 contacts, 50 pixels, {expected_openings} openings" in first.out

    second = cli("load-sample", str(SAMPLE))
    assert second.code == 0, second.err
    assert counts(db_url) == rows
    assert "0 campaigns (2 already present)" in second.out


def test_load_sample_for_another_owner(cli: Any, db_url: str) -> None:
    assert cli("create-admin", "--username", "boss", "--password", ADMIN_PASSWORD).code == 0
    assert cli("create-admin", "--username", "other", "--password", ADMIN_PASSWORD).code == 0
    assert cli("load-sample").code == 0
    result = cli("load-sample", "--owner", "other")
    assert result.code == 0, result.err
    assert "for 'other': 2 campaigns" in result.out
    assert counts(db_url)["campaigns"] == 4
    missing = cli("load-sample", "--owner", "nobody")
    assert missing.code == 1
    assert counts(db_url)["campaigns"] == 4


def test_load_sample_without_admin_exits_1(cli: Any, db_url: str) -> None:
    result = cli("load-sample")
    assert result.code == 1
    assert "create-admin" in result.err
    assert all(n == 0 for n in counts(db_url).values())


def _valid_campaign(name: str = "Valid campaign") -> dict[str, Any]:
    return {
        "name": name,
        "groups": [
            {
                "name": "A",
                "contacts": [
                    {"email": "one@example.com", "pixels": [{"number": 1, "openings": [{"client": "browser"}]}]},
                    {"email": "two@example.com", "pixels": [{"number": 1}]},
                ],
            }
        ],
        "links": [{"url": "https://example.com/"}],
    }


def _broken(mutate: Any) -> dict[str, Any]:
    data = {"campaigns": [_valid_campaign("First, valid"), _valid_campaign("Second")]}
    mutate(data["campaigns"][1])
    return data


def _set(path: list[Any], value: Any) -> Any:
    def mutate(campaign: dict[str, Any]) -> None:
        target: Any = campaign
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


BROKEN_FILES: dict[str, Any] = {
    "not-json": b"{not json",
    "invalid-utf8": b'{"campaigns": [{"name": "\xff"}]}',
    "empty": b"",
    "array": b"[]",
    "no-campaigns-key": {},
    "campaigns-not-a-list": {"campaigns": "many"},
    "unknown-field": _broken(_set(["colour"], "red")),
    "invalid-email": _broken(_set(["groups", 0, "contacts", 1, "email"], "not-an-email")),
    "name-too-long": _broken(_set(["name"], "x" * 201)),
    "bad-date": _broken(_set(["starts_at"], "soon")),
    "dates-out-of-order": _broken(lambda c: c.update(starts_at="2026-02-01T00:00:00Z", ends_at="2026-01-01T00:00:00Z")),
    "bad-link-url": _broken(_set(["links", 0, "url"], "javascript:alert(1)")),
    "bad-opening-client": _broken(_set(["groups", 0, "contacts", 0, "pixels", 0, "openings", 0, "client"], "fax")),
    "duplicate-contact-email": _broken(_set(["groups", 0, "contacts", 1, "email"], "ONE@example.com")),
    "duplicate-group-name": _broken(lambda c: c["groups"].append(copy.deepcopy(c["groups"][0]))),
    "duplicate-pixel-number": _broken(
        lambda c: c["groups"][0]["contacts"][0]["pixels"].append({"number": 1, "openings": []})
    ),
    "duplicate-event-id": _broken(
        lambda c: c["groups"][0]["contacts"][0]["pixels"][0].update(
            openings=[{"event_id": "evt-1"}, {"event_id": "evt-1"}]
        )
    ),
}


@pytest.mark.parametrize("content", BROKEN_FILES.values(), ids=BROKEN_FILES.keys())
def test_load_sample_of_a_broken_file_writes_nothing(cli: Any, db_url: str, tmp_path: Path, content: Any) -> None:
    assert cli("create-admin", "--username", "boss", "--password", ADMIN_PASSWORD).code == 0
    path = tmp_path / "broken.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    before = counts(db_url)
    result = cli("load-sample", str(path))
    assert result.code == 1, (result.out, result.err)
    assert "pixeltrack:" in result.err
    assert "broken.json" in result.err
    assert "Traceback" not in result.err
    assert counts(db_url) == before


def test_load_sample_event_id_already_in_the_database_writes_nothing(cli: Any, db_url: str, tmp_path: Path) -> None:
    assert cli("create-admin", "--username", "boss", "--password", ADMIN_PASSWORD).code == 0
    campaign = _valid_campaign("Has an event id")
    campaign["groups"][0]["contacts"][0]["pixels"][0]["openings"] = [{"event_id": "evt-42"}]
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"campaigns": [campaign]}))
    assert cli("load-sample", str(first)).code == 0
    before = counts(db_url)
    # The same event under another campaign name: the event id is globally unique.
    second = tmp_path / "second.json"
    campaign["name"] = "Same event again"
    second.write_text(json.dumps({"campaigns": [_valid_campaign("Fine"), campaign]}))
    result = cli("load-sample", str(second))
    assert result.code == 1, (result.out, result.err)
    assert "Traceback" not in result.err
    assert counts(db_url) == before


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_load_sample_of_an_unreadable_path_exits_1(cli: Any, db_url: str, tmp_path: Path, kind: str) -> None:
    assert cli("create-admin", "--username", "boss", "--password", ADMIN_PASSWORD).code == 0
    path = tmp_path / "nope.json"
    if kind == "directory":
        path.mkdir()
    result = cli("load-sample", str(path))
    assert result.code == 1
    assert "cannot load" in result.err
    assert counts(db_url)["campaigns"] == 0


# Configuration errors stop every command before it touches the database.


def test_production_without_secrets_refuses_every_database_command(
    cli: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("API_SECRET_KEY")
    monkeypatch.delenv("FERNET_KEY")
    for argv in (["migrate"], ["create-admin", "--username", "x", "--password", ADMIN_PASSWORD], ["load-sample"]):
        get_settings.cache_clear()
        result = cli(*argv)
        assert result.code != 0
        assert "refusing to start" in result.err
    assert not Path(db_url.removeprefix("sqlite:///")).exists()


# serve, end to end.


@pytest.mark.processes
def test_serve_end_to_end_with_generated_secrets_admin_and_sample(tmp_path: Path) -> None:
    port = free_port()
    db_file = tmp_path / "serve.db"
    env = {**_clean_environ(), "DATABASE_URL": f"sqlite:///{db_file}", "APP_ENV": "development"}
    env["PYTHONUNBUFFERED"] = "1"
    server = Serve(tmp_path, env, port=port)
    try:
        server.wait_healthy()
        docs = server.wait_for_line(r"(http://\S+/docs)").group(1)
        login = server.wait_for_line(r"Login: username '([^']+)', password '([^']+)'")
        username, password = login.group(1), login.group(2)
        assert docs == f"http://127.0.0.1:{port}/docs"

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
            token = http.post("/auth/token", data={"username": username, "password": password})
            assert token.status_code == 200, token.text
            auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
            me = http.get("/auth/me", headers=auth).json()
            assert (me["username"], me["is_admin"]) == (username, True)
            campaigns = http.get("/api/v1/campaigns", headers=auth)
            assert campaigns.status_code == 200
            assert campaigns.json()["total"] == 2
            page = httpx.get(docs, timeout=10.0)
            assert page.status_code == 200
            assert "swagger" in page.text.lower()
            assert http.get("/openapi.json").status_code == 200
            wrong = http.post("/auth/token", data={"username": username, "password": "wrong-password"})
            assert wrong.status_code == 401

        # Development secrets were generated into the working directory, and not printed.
        stored = json.loads((tmp_path / ".pixeltrack-secrets.json").read_text())
        assert set(stored) == {"api_secret_key", "fernet_key"}
        assert stored["api_secret_key"] not in server.output
        assert stored["fernet_key"] not in server.output
        assert db_file.exists()
    finally:
        server.stop()
    assert server.proc.returncode is not None


@pytest.mark.processes
def test_serve_in_production_without_secrets_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    db_file = tmp_path / "prod.db"
    env = {**_clean_environ(), "DATABASE_URL": f"sqlite:///{db_file}", "APP_ENV": "production"}
    result = subprocess.run(
        [str(PIXELTRACK), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "refusing to start" in result.stderr
    assert "API_SECRET_KEY" in result.stderr
    assert "FERNET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert "/docs" not in result.stdout
    assert not db_file.exists()
    assert not (tmp_path / ".pixeltrack-secrets.json").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
