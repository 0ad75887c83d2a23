"""Test harness: one database leg per run, selected with `--db sqlite|mysql` (or TEST_DB).

- sqlite: a fresh SQLite file in a temp dir (WAL, foreign keys on), as in embedded mode.
- mysql: a fresh database on the real MariaDB (TEST_MYSQL_URL, default root@127.0.0.1:3306),
  created for this run and dropped afterwards. Required when CI=true; otherwise skipped
  with a visible reason when MariaDB is unreachable.

The schema is always built by Alembic (`upgrade head`), never `create_all`. Each test
is isolated by deleting every row afterwards.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.db import READ_ONLY, make_engine, make_sessionmaker
from app.main import create_app
from app.migrations import upgrade
from app.models import Base, User
from app.settings import Settings
from tests import factories
from tests.helpers import counter_drift
from tests.support.clock import still_windows as still_windows  # a fixture, for every test module
from tests.support.private_db import private_database, server_database
from tests.support.webhooks import hook_settings

DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db", choices=["sqlite", "mysql"], default=os.environ.get("TEST_DB", "sqlite"), help="database leg"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"database leg: {config.getoption('--db')}"


# Modules whose tests are all slow and whose collection alone is slow too (schemathesis builds
# its cases while collecting: ~20 s of CPU): a run that deselects `slow` (the fast loop) does not
# collect them at all. pytest_collection_modifyitems checks that their tests are all slow.
SLOW_MODULES = frozenset({"test_fuzz.py"})


def _deselects_slow(config: pytest.Config) -> bool:
    """Whether `-m` deselects every slow test, whatever its other markers."""
    from _pytest.mark.expression import Expression  # what `-m` itself evaluates

    markexpr: str = config.getoption("markexpr")
    if not markexpr:
        return False
    expression = Expression.compile(markexpr)

    def slow_alone(name: str, /, **_kw: object) -> bool:
        return name == "slow"

    def slow_with_any_other(_name: str, /, **_kw: object) -> bool:
        return True

    return not expression.evaluate(slow_alone) and not expression.evaluate(slow_with_any_other)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name in SLOW_MODULES and _deselects_slow(config):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    leg = config.getoption("--db")
    for item in items:
        # The fast loop (`-m "not slow"`) leaves out whatever starts processes.
        if item.get_closest_marker("processes") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        if item.path.name in SLOW_MODULES and not item.get_closest_marker("slow"):
            raise pytest.UsageError(f"{item.nodeid} is not marked slow, but its module is in SLOW_MODULES")
        if leg == "sqlite" and item.get_closest_marker("mysql_only"):
            item.add_marker(pytest.mark.skip(reason="MariaDB leg only"))
        if leg == "mysql" and item.get_closest_marker("sqlite_only"):
            item.add_marker(pytest.mark.skip(reason="SQLite leg only"))


def _mysql_server_url() -> str:
    return os.environ.get("TEST_MYSQL_URL", DEFAULT_MYSQL_URL)


@pytest.fixture(scope="session")
def db_leg(request: pytest.FixtureRequest) -> str:
    leg: str = request.config.getoption("--db")
    return leg


@pytest.fixture(scope="session")
def database_url(db_leg: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if db_leg == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'pixeltrack-test.db'}"
        return
    server = make_url(_mysql_server_url())
    admin = create_engine(server, pool_pre_ping=True)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        message = f"MariaDB unreachable at {server.render_as_string(hide_password=True)}: {exc.__class__.__name__}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required when CI=true)", pytrace=False)
        pytest.skip(message)
    admin.dispose()
    with server_database(server, "pixeltrack_test") as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def private_url(db_leg: str, database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of this test only, for tests that drop it or kill its connections."""
    with private_database(db_leg, database_url, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        _env_file=None,
        app_env="test",
        database_url=database_url,
        api_secret_key="test-secret-key-" + "x" * 40,
        fernet_key=Fernet.generate_key().decode(),
        public_base_url="http://track.test",
        secrets_file=str(tmp_path_factory.mktemp("secrets") / "secrets.json"),
        redis_url=None,
        redis_host=None,
        # Abuse limits are tested by tests that set them; the suite makes many requests as one user.
        rate_limit_per_minute=0,
        conversion_rate_limit_per_minute=0,
        login_max_failures=1000,
    )


@pytest.fixture(scope="session")
def app(settings: Settings, engine: Engine) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    # A reader on SQLite (app/db.READ_ONLY: no write lock held between a test's reads, while the
    # app writes from other threads); the factories' writes in it run one at a time anyway.
    session = make_sessionmaker(engine.execution_options(**{READ_ONLY: True}))()
    yield session
    session.close()


@pytest.fixture(autouse=True)
def _isolate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete every row after each test that touched the database."""
    yield
    if "engine" not in request.fixturenames:
        return
    eng: Engine = request.getfixturevalue("engine")
    with eng.begin() as conn:
        # Whatever the test did, the report counters must equal a recompute from the rows.
        drift = [] if request.node.get_closest_marker("counters_unchecked") else counter_drift(conn)
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    assert not drift, f"report counters out of step with the rows: {drift[:5]}"


# Users and their auth headers.


@pytest.fixture
def user(db: Session) -> User:
    return factories.make_user(db, username="alice")


@pytest.fixture
def other_user(db: Session) -> User:
    return factories.make_user(db, username="mallory")


@pytest.fixture
def admin(db: Session) -> User:
    return factories.make_user(db, username="root_admin", is_admin=True)


@pytest.fixture
def headers(settings: Settings, user: User) -> dict[str, str]:
    return factories.headers_for(settings, user)


@pytest.fixture
def other_headers(settings: Settings, other_user: User) -> dict[str, str]:
    return factories.headers_for(settings, other_user)


@pytest.fixture
def admin_headers(settings: Settings, admin: User) -> dict[str, str]:
    return factories.headers_for(settings, admin)


@pytest.fixture
def tree(db: Session, user: User) -> dict[str, Any]:
    return factories.make_tree(db, user)


# Redis: a private redis-server of this run on a free port (started once per session), so
# concurrent runs on one machine never share keys; tests that use it start from an empty one.


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.support.redis_server import PrivateRedis

    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required when CI=true)", pytrace=False)
        pytest.skip(message)
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    from app.clients import sync_redis

    client = sync_redis(redis_url)
    client.flushdb()  # our own server (see redis_url)
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def private_ok(app: FastAPI, settings: Settings) -> Iterator[Settings]:
    """The API accepts loopback webhook receivers (WEBHOOK_ALLOW_PRIVATE=true) for this test."""
    relaxed = hook_settings(settings)
    app.state.settings = relaxed
    try:
        yield relaxed
    finally:
        app.state.settings = settings


# Redis Cluster: 3 masters + 3 replicas of this run (tests/support/redis_cluster.py), started once
# per session for the tests that do not break it; fault tests start their own.


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.support.redis_cluster import PrivateRedisCluster

    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        message = "redis-server / redis-cli are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required when CI=true)", pytrace=False)
        pytest.skip(message)
    cluster = PrivateRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
