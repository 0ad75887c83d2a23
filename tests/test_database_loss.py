"""The database dropped or unreachable under a running API (issue 10, item 7): every route answers
503 in the one error shape with Retry-After (never a 500), /readyz is 503, the click fast path
answers 503 JSON, and the in-process flusher logs one line per state change without personal data.

Each test uses a private database (`private_url`: a temp SQLite file, or a database of its own on
the test MariaDB) so that dropping it touches nothing else.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.db import make_engine
from app.main import create_asgi
from app.migrations import upgrade
from app.settings import Settings
from app.tracking.tokens import TokenCodec
from tests import factories
from tests.helpers import assert_error
from tests.support.app_state import in_app_loop
from tests.support.private_db import drop_database, seeded
from tests.support.processes import free_port

SECRET_UA = "LeakCheck-UA/9.9 (never-in-logs)"


def requests_to_check(tree: dict[str, Any], headers: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    campaign = tree["campaign"].id
    return [
        ("POST", "/auth/token", {"data": {"username": tree["user"].username, "password": factories.PASSWORD}}),
        ("GET", "/auth/me", {"headers": headers}),
        ("GET", "/api/v1/campaigns", {"headers": headers}),
        ("POST", "/api/v1/campaigns", {"headers": headers, "json": {"name": "during the outage"}}),
        ("GET", f"/api/v1/campaigns/{campaign}", {"headers": headers}),
        ("GET", f"/api/v1/campaigns/{campaign}/groups", {"headers": headers}),
        ("GET", f"/api/v1/campaigns/{campaign}/stats", {"headers": headers}),
        ("GET", f"/api/v1/campaigns/{campaign}/openings.csv", {"headers": headers}),
        ("GET", f"/api/v1/campaigns/{campaign}/clicks.csv", {"headers": headers}),
    ]


def assert_unavailable(response: Any) -> None:
    assert_error(response, 503, "service_unavailable")
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == "application/json"


def test_dropped_database_answers_503_on_every_route(
    settings: Settings, private_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    tree = seeded(private_url)
    headers = factories.headers_for(settings, tree["user"])
    app = create_asgi(settings.model_copy(update={"database_url": private_url}))
    with TestClient(app) as client:
        assert client.get("/auth/me", headers=headers).status_code == 200  # pooled connections exist
        assert client.get("/readyz").status_code == 200
        codec = app.state.tracker.codec
        codec_click = f"/c/{codec.click_token(tree['link'].id, tree['contact'].id)}"
        drop_database(private_url)
        # Credentials are cached for a few seconds (app/authn.py): /auth/me would answer from the
        # cache; without it, it reads the user from the database like every other route.
        app.state.auth.forget_all()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            for method, path, kwargs in requests_to_check(tree, headers):
                response = client.request(method, path, **kwargs)
                assert response.status_code == 503, (method, path, response.status_code, response.text)
                assert_unavailable(response)
            # An uncached link: the click fast path cannot read its URL.
            for _ in range(3):
                assert_unavailable(client.get(codec_click, follow_redirects=False))
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.headers["retry-after"] == "5"
            assert ready.json()["code"] == "service_unavailable"
            assert ready.json()["detail"]["schema"] in ("missing", "unknown")
            assert client.head("/readyz").status_code == 503
    # Nothing went to the generic 500 handler, and the outage is logged by class, not by query.
    assert not [r for r in caplog.records if r.name == "pixeltrack.errors" and r.exc_info]
    assert not [r for r in caplog.records if "Internal server error" in r.getMessage()]
    links_down = [r for r in caplog.records if r.name == "pixeltrack.tracking"]
    assert len(links_down) == 1, [r.getMessage() for r in links_down]  # once per outage, not per click


def test_dropped_table_fails_an_export_before_its_200(settings: Settings, private_url: str) -> None:
    """The CSV export's first query runs before the status line: a missing table is a 503, not a
    200 whose body stops after the header row."""
    tree = seeded(private_url)
    headers = factories.headers_for(settings, tree["user"])
    with TestClient(create_asgi(settings.model_copy(update={"database_url": private_url}))) as client:
        path = f"/api/v1/campaigns/{tree['campaign'].id}/openings.csv"
        assert client.get(path, headers=headers).status_code == 200
        eng = create_engine(private_url, poolclass=NullPool)
        with eng.begin() as conn:
            conn.execute(text("DROP TABLE openings"))
        eng.dispose()
        assert_unavailable(client.get(path, headers=headers))


def unreachable_url(db_leg: str, tmp_path: Path) -> str:
    if db_leg == "sqlite":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        return f"sqlite:///{blocker / 'db.sqlite'}"  # cannot be opened
    return f"mysql+pymysql://root@127.0.0.1:{free_port()}/nothing?charset=utf8mb4"  # nobody listens


def test_unreachable_database_answers_503_and_the_flusher_logs_once(
    settings: Settings, db_leg: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = unreachable_url(db_leg, tmp_path)
    app = create_asgi(settings.model_copy(update={"database_url": url}))
    codec = TokenCodec(settings.fernet_keys())
    with caplog.at_level(logging.INFO), TestClient(app) as client:
        login = client.post("/auth/token", data={"username": "someone", "password": "whatever-123"})
        assert_unavailable(login)
        assert_unavailable(client.get(f"/c/{codec.click_token(1, 1)}", follow_redirects=False))
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "detail": {"database": "unavailable", "schema": "unknown"},
            "code": "service_unavailable",
        }
        # Pixels never wait on the database: answered, kept in memory, retried with backoff.
        pixel = client.get(f"/o/{codec.pixel_token(1)}.gif", headers={"User-Agent": SECRET_UA})
        assert pixel.status_code == 200
        memory = app.state.tracking.memory
        for _ in range(5):
            in_app_loop(client, memory.flush)
        assert memory.pending == 1
        assert memory.db_down
    flusher = [r for r in caplog.records if r.name == "pixeltrack.queue"]
    assert len([r for r in flusher if r.levelno >= logging.ERROR]) == 1, [r.getMessage() for r in flusher]
    for record in caplog.records:
        text_logged = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        assert SECRET_UA not in text_logged
        assert "testclient" not in text_logged  # the TestClient's client address
        assert record.exc_info is None or record.name != "pixeltrack.queue", "no traceback per flush"


def test_flusher_logs_recovery_once_and_writes_what_it_kept(
    settings: Settings, private_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    tree = seeded(private_url)
    app = create_asgi(settings.model_copy(update={"database_url": private_url}))
    codec = TokenCodec(settings.fernet_keys())
    with caplog.at_level(logging.INFO), TestClient(app) as client:
        memory = app.state.tracking.memory
        drop_database(private_url)
        assert client.get(f"/o/{codec.pixel_token(tree['pixel'].id)}.gif").status_code == 200
        for _ in range(3):
            in_app_loop(client, memory.flush)
        assert memory.pending == 1
        assert memory.db_down
        if make_url(private_url).get_backend_name() != "sqlite":
            eng = create_engine(make_url(private_url).set(database=""), poolclass=NullPool)
            with eng.begin() as conn:
                conn.execute(text(f"CREATE DATABASE `{make_url(private_url).database}`"))
            eng.dispose()
        fresh = make_engine(private_url)
        upgrade(fresh)  # an empty schema again: the kept event's pixel is gone, so it is skipped
        fresh.dispose()
        result = in_app_loop(client, memory.flush)
        assert (result.inserted, result.skipped_missing) == (0, 1)
        assert memory.pending == 0
        assert not memory.db_down
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "pixeltrack.queue"]
    assert [level for level, _ in messages] == [logging.ERROR, logging.WARNING], messages
