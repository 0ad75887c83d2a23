"""Read replicas (DATABASE_REPLICA_URL, app/replicas.py) against a real MariaDB primary + replica
pair with binlog replication (tests/support/mariadb_replication.py), private to this module and
the same in both test legs (the leg's own database is not used).

Stopping the replica's SQL thread freezes what it shows: a row written on the primary then is on
the primary only, so whether a read sees it says which server answered. Read-your-writes uses a
controllable clock instead of waiting REPLICA_STICKY_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db import make_engine, make_sessionmaker, session_scope
from app.main import create_app
from app.migrations import upgrade
from app.models import User
from app.replicas import ReadRouter
from app.settings import Settings
from tests import factories
from tests.support.app_state import app_state
from tests.support.mariadb_replication import MariaDBPair
from tests.support.processes import wait_until

pytestmark = pytest.mark.processes

MAX_LAG = 30.0  # far above any lag these tests make, but where a test lowers it on purpose


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBPair]:
    servers = MariaDBPair(tmp_path_factory.mktemp("replication"))
    try:
        servers.start()
        primary = make_engine(servers.url(servers.primary))
        upgrade(primary)
        primary.dispose()
        servers.wait_caught_up()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def primary(pair: MariaDBPair) -> Iterator[Engine]:
    engine = make_engine(pair.url(pair.primary))
    yield engine
    engine.dispose()


def _settings(pair: MariaDBPair, tmp: Path, redis_url: str | None = None) -> Settings:
    return Settings(
        _env_file=None,
        app_env="test",
        database_url=pair.url(pair.primary),
        database_replica_url=pair.url(pair.replica),
        replica_max_lag_seconds=MAX_LAG,
        api_secret_key="test-secret-key-" + "r" * 40,
        fernet_key=Fernet.generate_key().decode(),
        public_base_url="http://track.test",
        secrets_file=str(tmp / "secrets.json"),
        redis_url=redis_url,
        redis_host=None,
        rate_limit_per_minute=0,
        conversion_rate_limit_per_minute=0,
        login_max_failures=1000,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def settings_(pair: MariaDBPair, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _settings(pair, tmp_path_factory.mktemp("replica-app"))


@pytest.fixture(scope="module")
def client(settings_: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings_)) as test_client:
        yield test_client


def _reads(client: TestClient) -> ReadRouter:
    reads: ReadRouter = app_state(client).reads
    return reads


def _wait_fit(reads: ReadRouter) -> None:
    monitor = reads.monitor
    assert monitor is not None

    def fit() -> bool:
        monitor.check()
        return monitor.usable()

    wait_until(fit, "the replica to be fit to read from", timeout=30, interval=0.05)


@pytest.fixture
def clock(client: TestClient, pair: MariaDBPair) -> Iterator[Clock]:
    """A fresh start for each test: replication running and caught up, the replica fit to read
    from, nobody sticky, and the stickiness clock in the test's hands."""
    pair.start_sql_thread()
    pair.wait_caught_up()
    reads = _reads(client)
    assert reads.monitor is not None
    assert reads.sticky is not None
    reads.monitor.max_lag = MAX_LAG
    _wait_fit(reads)
    fake = Clock()
    reads.sticky.clock = fake
    reads.sticky._until.clear()
    yield fake
    pair.start_sql_thread()


def _user(primary: Engine, settings: Settings, name: str, *, admin: bool = False) -> tuple[User, dict[str, str]]:
    with session_scope(make_sessionmaker(primary)) as db:
        user = factories.make_user(db, username=f"{name}{time.monotonic_ns() % 10**9}", is_admin=admin)
    return user, factories.headers_for(settings, user)


def _reads_by_target() -> dict[str, float]:
    return {
        target: REGISTRY.get_sample_value("pixeltrack_db_reads_total", {"target": target}) or 0.0
        for target in ("primary", "replica")
    }


def _campaign_names(client: TestClient, headers: dict[str, str]) -> set[str]:
    response = client.get("/api/v1/campaigns", headers=headers)
    assert response.status_code == 200, response.text
    return {item["name"] for item in response.json()["items"]}


def _new_campaign(client: TestClient, headers: dict[str, str], name: str) -> int:
    response = client.post("/api/v1/campaigns", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    campaign_id: int = response.json()["id"]
    return campaign_id


def test_lists_stats_exports_and_the_feed_read_from_the_replica(
    client: TestClient, pair: MariaDBPair, primary: Engine, settings_: Settings, clock: Clock
) -> None:
    _, headers = _user(primary, settings_, "alice")
    campaign_id = _new_campaign(client, headers, "replicated")
    pair.wait_caught_up()
    clock.now += settings_.replica_sticky_seconds + 1  # alice's write is out of the sticky window
    pair.stop_sql_thread()
    _new_campaign(client, headers, "primary only")  # on the primary; the replica does not apply it
    clock.now += settings_.replica_sticky_seconds + 1
    before = _reads_by_target()
    assert _campaign_names(client, headers) == {"replicated"}  # from the replica
    stats = client.get(f"/api/v1/campaigns/{campaign_id}/stats", headers=headers)
    assert stats.status_code == 200, stats.text
    csv = client.get(f"/api/v1/campaigns/{campaign_id}/openings.csv", headers=headers)
    assert csv.status_code == 200, csv.text
    feed = client.get("/api/v1/events", headers=headers)
    assert feed.status_code == 200, feed.text
    after = _reads_by_target()
    assert after["replica"] - before["replica"] == 4
    assert after["primary"] == before["primary"]
    pair.start_sql_thread()
    pair.wait_caught_up()
    assert _campaign_names(client, headers) == {"replicated", "primary only"}


def test_read_your_writes_while_the_replica_is_stopped(
    client: TestClient, pair: MariaDBPair, primary: Engine, settings_: Settings, clock: Clock
) -> None:
    _, writer = _user(primary, settings_, "writer", admin=True)
    _, other = _user(primary, settings_, "other", admin=True)
    pair.wait_caught_up()
    pair.stop_sql_thread()
    newcomer = f"newcomer{time.monotonic_ns() % 10**9}"
    body = {"username": newcomer, "email": f"{newcomer}@example.com", "password": "Correct-horse-42-battery"}
    created = client.post("/api/v1/users", json=body, headers=writer)
    assert created.status_code == 201, created.text
    campaign_id = _new_campaign(client, writer, "fresh")

    def usernames(headers: dict[str, str]) -> set[str]:
        response = client.get("/api/v1/users", params={"limit": 500}, headers=headers)
        assert response.status_code == 200, response.text
        return {item["username"] for item in response.json()["items"]}

    # The writer's next requests read from the primary: they see the writes at once.
    assert newcomer in usernames(writer)
    assert client.get(f"/api/v1/campaigns/{campaign_id}/stats", headers=writer).status_code == 200
    assert "fresh" in _campaign_names(client, writer)
    # Another user, in the same instant, reads the replica: not there yet.
    assert newcomer not in usernames(other)
    # After REPLICA_STICKY_SECONDS the writer reads from the replica too.
    clock.now += settings_.replica_sticky_seconds - 0.5
    assert client.get(f"/api/v1/campaigns/{campaign_id}/stats", headers=writer).status_code == 200
    clock.now += 1
    assert client.get(f"/api/v1/campaigns/{campaign_id}/stats", headers=writer).status_code == 404
    assert newcomer not in usernames(writer)
    pair.start_sql_thread()
    pair.wait_caught_up()
    assert newcomer in usernames(other)


def test_readyz_reports_lag_and_reads_fall_back_beyond_the_maximum(
    client: TestClient, pair: MariaDBPair, primary: Engine, settings_: Settings, clock: Clock
) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["replica"] == "ok"
    assert ready.json()["replica"]["reads_from"] == "replica"
    assert ready.json()["replica"]["lag_seconds"] == 0
    _, headers = _user(primary, settings_, "lagged")
    pair.stop_sql_thread()
    _new_campaign(client, headers, "behind")
    clock.now += settings_.replica_sticky_seconds + 1
    assert _campaign_names(client, headers) == set()  # the replica, within the maximum lag
    monitor = _reads(client).monitor
    assert monitor is not None
    monitor.max_lag = 0.3

    def lagging() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get("/readyz").json()
        return body if body["checks"]["replica"] == "lagging" else None

    body = wait_until(lagging, "/readyz to report the replica lagging", timeout=15, interval=0.05)
    assert body is not None
    assert body["status"] == "degraded"
    # "lagging" is decided on the lag itself (> 0.3); /readyz shows it rounded to the millisecond,
    # and checks a fixed interval apart often measure 0.3 plus a fraction of a millisecond.
    assert body["replica"]["lag_seconds"] >= 0.3
    assert body["replica"]["reads_from"] == "primary"
    assert body["replica"]["sql_running"] == "No"
    lag = REGISTRY.get_sample_value("pixeltrack_replica_lag_seconds")
    assert lag is not None
    assert lag > 0.3
    before = _reads_by_target()
    assert _campaign_names(client, headers) == {"behind"}  # the primary
    assert _reads_by_target()["primary"] == before["primary"] + 1
    pair.start_sql_thread()
    pair.wait_caught_up()
    body = wait_until(lambda: (b := client.get("/readyz").json())["checks"]["replica"] == "ok" and b, "replica ok")
    assert body["replica"]["lag_seconds"] == 0
    assert body["status"] == "ok"


def test_a_dead_replica_sends_reads_to_the_primary_without_an_error(
    client: TestClient, pair: MariaDBPair, primary: Engine, settings_: Settings, clock: Clock
) -> None:
    _, headers = _user(primary, settings_, "survivor")
    campaign_id = _new_campaign(client, headers, "kept")
    clock.now += settings_.replica_sticky_seconds + 1
    assert _campaign_names(client, headers) == {"kept"}  # warms the replica's pool
    pair.replica.kill()
    try:
        # The monitor still believes the replica up: the first read fails there and runs again.
        for _ in range(3):
            assert _campaign_names(client, headers) == {"kept"}
            stats = client.get(f"/api/v1/campaigns/{campaign_id}/stats", headers=headers)
            assert stats.status_code == 200, stats.text
            assert client.get(f"/api/v1/campaigns/{campaign_id}/clicks.csv", headers=headers).status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["replica"] == "unavailable"
        assert ready.json()["replica"]["reads_from"] == "primary"
        assert REGISTRY.get_sample_value("pixeltrack_dependency_up", {"dependency": "replica"}) == 0
    finally:
        pair.replica.start()
        pair.replica_sql("START SLAVE")
    pair.wait_caught_up()
    _wait_fit(_reads(client))
    before = _reads_by_target()
    assert _campaign_names(client, headers) == {"kept"}
    assert _reads_by_target()["replica"] == before["replica"] + 1


def _writes_on(engine: Engine) -> int:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SHOW GLOBAL STATUS WHERE Variable_name IN "
                "('Com_insert', 'Com_update', 'Com_delete', 'Com_replace', 'Com_insert_select')"
            )
        ).all()
    return sum(int(value) for _, value in rows)


def test_writes_never_go_to_the_replica(
    client: TestClient, pair: MariaDBPair, primary: Engine, settings_: Settings, clock: Clock
) -> None:
    replica_admin = pair.admin(pair.replica)
    _, headers = _user(primary, settings_, "scribe")
    pair.wait_caught_up()
    pair.stop_sql_thread()
    before = _writes_on(replica_admin)
    campaign_id = _new_campaign(client, headers, "written")
    assert (
        client.patch(f"/api/v1/campaigns/{campaign_id}", json={"name": "renamed"}, headers=headers).status_code == 200
    )
    clock.now += settings_.replica_sticky_seconds + 1
    assert _campaign_names(client, headers) == set()  # a read on the replica in between
    assert client.delete(f"/api/v1/campaigns/{campaign_id}", headers=headers).status_code == 204
    assert _writes_on(replica_admin) == before
    # And a replica session cannot write even if asked to (SET SESSION TRANSACTION READ ONLY).
    reads = _reads(client)
    assert reads.replica is not None
    session: Session = reads.replica.factory()
    with pytest.raises(DBAPIError) as refused:
        session.execute(text("UPDATE alembic_version SET version_num = version_num"))
    session.close()
    assert refused.value.orig is not None
    assert refused.value.orig.args[0] == 1792  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
    replica_admin.dispose()


def test_stickiness_is_shared_between_api_processes_through_redis(
    pair: MariaDBPair, primary: Engine, redis_url: str, tmp_path: Path
) -> None:
    """Two app instances (as two API processes) on one Redis: a write through one makes the
    writer's reads through the other go to the primary; without Redis they would not."""
    settings = _settings(pair, tmp_path, redis_url)
    _, headers = _user(primary, settings, "roamer")
    pair.wait_caught_up()
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        pair.stop_sql_thread()
        try:
            _new_campaign(one, headers, "through one")
            assert _campaign_names(two, headers) == {"through one"}
            local = _reads(two).sticky
            assert local is not None
            assert not local._until  # two learnt it from Redis, not from a write of its own
        finally:
            pair.start_sql_thread()
    pair.wait_caught_up()
