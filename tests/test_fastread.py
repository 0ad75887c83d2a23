"""The GET of one campaign, group or link reads without a Session (app/fastread.py): on MariaDB
through asyncmy on the event loop, on SQLite in a worker thread. It must answer exactly what the
ORM path answers, keep tenants apart, survive a connection the server dropped, and answer 503
when the database is gone (tests/test_database_loss.py checks that on every route)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.db import make_engine
from app.errors import is_database_unavailable
from app.fastread import DriverReads, ThreadReads, _as_sqlalchemy, make_owned_reads
from app.main import create_asgi
from app.models import Campaign, User
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error
from tests.support.private_db import seeded
from tests.support.tcp_proxy import FreezableProxy

CAMPAIGN = {
    "name": "Spring sale",
    "description": "Ünïcode ✓ and 'quotes'",
    "starts_at": "2026-03-01T08:00:00Z",
    "ends_at": "2026-03-31T20:00:00Z",
    "tracking_default": "anonymous",
    "attribution_default": True,
    "conversion_origins": ["https://shop.example", "https://www.shop.example"],
}


def test_the_app_reads_through_the_driver_on_mariadb_and_in_a_thread_on_sqlite(
    app: FastAPI, client: TestClient, db_leg: str
) -> None:
    """(`client` has run the lifespan, where the reader is made.)"""
    expected = DriverReads if db_leg == "mysql" else ThreadReads
    assert isinstance(app.state.owned_reads, expected)


def test_a_url_with_options_the_driver_is_not_given_reads_in_a_thread() -> None:
    engine = make_engine("mysql+pymysql://u:p@127.0.0.1:1/db?charset=utf8mb4&ssl_ca=/etc/ca.pem")
    try:
        reads = make_owned_reads(str(engine.url), engine, pool_size=2, connect_timeout=1, read_timeout=1)
        assert isinstance(reads, ThreadReads)
        plain = "mysql+pymysql://u:p@127.0.0.1:1/db?charset=utf8mb4"
        assert isinstance(make_owned_reads(plain, engine, pool_size=2, connect_timeout=1, read_timeout=1), DriverReads)
    finally:
        engine.dispose()


def test_each_get_answers_what_the_orm_path_answered(client: TestClient, headers: dict[str, str]) -> None:
    created = client.post("/api/v1/campaigns", json=CAMPAIGN, headers=headers)
    assert created.status_code == 201, created.text
    campaign = created.json()
    got = client.get(f"/api/v1/campaigns/{campaign['id']}", headers=headers)
    assert got.status_code == 200
    assert got.json() == campaign  # JSON list, booleans, dates in UTC, enums: as the ORM gave them
    assert campaign["conversion_origins"] == CAMPAIGN["conversion_origins"]
    assert campaign["attribution_default"] is True

    group = client.post(f"/api/v1/campaigns/{campaign['id']}/groups", json={"name": "B"}, headers=headers)
    assert group.status_code == 201, group.text
    assert client.get(f"/api/v1/groups/{group.json()['id']}", headers=headers).json() == group.json()

    link_body = {"url": "https://shop.example/p?id=1&x=ü", "name": "product", "attribution": True}
    link = client.post(f"/api/v1/campaigns/{campaign['id']}/links", json=link_body, headers=headers)
    assert link.status_code == 201, link.text
    assert client.get(f"/api/v1/links/{link.json()['id']}", headers=headers).json() == link.json()


def test_someone_elses_or_a_missing_object_is_404_and_an_admin_reads_any(
    client: TestClient,
    db: Session,
    user: User,
    headers: dict[str, str],
    other_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    tree = factories.make_tree(db, user)
    db.commit()
    paths = [
        (f"/api/v1/campaigns/{tree['campaign'].id}", "Campaign"),
        (f"/api/v1/groups/{tree['group'].id}", "Group"),
        (f"/api/v1/links/{tree['link'].id}", "Link"),
    ]
    for path, model in paths:
        assert_error(client.get(path, headers=other_headers), 404, "not_found")
        assert client.get(path, headers=other_headers).json()["detail"] == f"{model} not found."
        missing = path.rsplit("/", 1)[0] + "/999999999"
        assert_error(client.get(missing, headers=headers), 404, "not_found")
    for path, _model in paths:
        response = client.get(path, headers=admin_headers)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == int(path.rsplit("/", 1)[1])


def _kill_connections(server_url: str, database: str) -> int:
    """KILL every connection to `database` (this test's own): what a server restart does to a pool."""
    admin = create_engine(make_url(server_url).set(database=""), poolclass=NullPool)
    with admin.connect() as conn:
        ids = list(
            conn.scalars(
                text("SELECT id FROM information_schema.processlist WHERE db = :db AND id <> CONNECTION_ID()"),
                {"db": database},
            )
        )
        for connection_id in ids:
            conn.execute(text(f"KILL CONNECTION {int(connection_id)}"))
    admin.dispose()
    return len(ids)


def test_a_pooled_connection_the_server_dropped_is_replaced(db_leg: str, settings: Settings, private_url: str) -> None:
    if db_leg != "mysql":
        pytest.skip("a pooled server connection to drop: MariaDB only")
    tree: dict[str, Any] = seeded(private_url)
    headers = factories.headers_for(settings, tree["user"])
    path = f"/api/v1/campaigns/{tree['campaign'].id}"
    app = create_asgi(settings.model_copy(update={"database_url": private_url}))
    with TestClient(app) as client:
        first = client.get(path, headers=headers)
        assert first.status_code == 200, first.text
        assert _kill_connections(private_url, make_url(private_url).database or "") >= 1
        again = client.get(path, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()


def test_a_read_timeout_or_a_socket_error_is_the_database_unavailable() -> None:
    for error in (TimeoutError(), ConnectionResetError()):
        converted = _as_sqlalchemy("SELECT 1", error)
        assert isinstance(converted, OperationalError)
        assert is_database_unavailable(converted)


@pytest.mark.mysql_only
def test_a_database_that_stops_answering_fails_the_read_at_the_read_timeout(
    engine: Engine, database_url: str, db: Session, user: User
) -> None:
    """A host that hangs (no FIN, no RST) fails the read after DATABASE_READ_TIMEOUT_SECONDS, as
    the database unavailable (503), and the connection is dropped: once it answers again, so does
    the read (one deadline over the whole answer, app/fastread.DriverReads._fetch)."""
    campaign = factories.make_tree(db, user)["campaign"]
    db.commit()
    url = make_url(database_url)
    proxy = FreezableProxy(url.host or "127.0.0.1", url.port or 3306)
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    reads = make_owned_reads(through, engine, pool_size=2, connect_timeout=2, read_timeout=0.5)
    assert isinstance(reads, DriverReads)

    async def scenario() -> None:
        try:
            found = await reads.row(Campaign, (), campaign.id, user.id)
            assert found is not None
            assert found["name"] == campaign.name
            proxy.freeze()
            started = time.monotonic()
            with pytest.raises(OperationalError) as failed:
                await reads.row(Campaign, (), campaign.id, user.id)
            assert is_database_unavailable(failed.value)
            assert 0.4 < time.monotonic() - started < 5
            proxy.thaw()
            again = await reads.row(Campaign, (), campaign.id, user.id)
            assert again == found
        finally:
            proxy.thaw()
            await reads.close()
            proxy.close()

    asyncio.run(scenario())
