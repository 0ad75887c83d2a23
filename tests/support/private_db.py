"""A database of one test only (a temp SQLite file, or a database of its own on the test MariaDB),
for tests that drop it or kill its connections: nothing else on the server is touched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.db import make_engine, make_sessionmaker
from app.migrations import upgrade
from app.models import Base
from tests import factories


@contextmanager
def server_database(server: URL, prefix: str, charset: str = "utf8mb4 COLLATE utf8mb4_bin") -> Iterator[str]:
    """The URL of a new database `<prefix>_<random>` on the MariaDB server `server` (a URL without
    a database), dropped afterwards: the test run's, a migration test's, one test's."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET {charset}"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@contextmanager
def private_database(db_leg: str, database_url: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped afterwards (the run's database never is)."""
    if db_leg == "sqlite":
        yield f"sqlite:///{tmp_path / 'private.db'}"
        return
    with server_database(make_url(database_url).set(database=""), "pixeltrack_private") as url:
        yield url


def drop_database(url: str) -> None:
    """MariaDB: DROP DATABASE. SQLite: drop every table (the file itself stays open in the pool)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        eng = create_engine(url, poolclass=NullPool)
        with eng.begin() as conn:
            conn.execute(text("PRAGMA foreign_keys=OFF"))
            for table in [*reversed(Base.metadata.sorted_tables)]:
                conn.execute(text(f'DROP TABLE IF EXISTS "{table.name}"'))
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        eng.dispose()
        return
    eng = create_engine(parsed.set(database=""), poolclass=NullPool)
    with eng.begin() as conn:
        conn.execute(text(f"DROP DATABASE `{parsed.database}`"))
    eng.dispose()


def seeded(url: str) -> dict[str, Any]:
    eng = make_engine(url)
    upgrade(eng)
    with Session(eng, expire_on_commit=False) as db:
        user = factories.make_user(db, username="loss-" + uuid.uuid4().hex[:6])
        tree = factories.make_tree(db, user)
        db.commit()
    eng.dispose()
    return {"user": user, **tree}


def campaign_with_groups(engine: Engine, groups: int) -> tuple[int, int, list[int]]:
    """Migrates `engine`'s (new) database and adds a user's campaign of `groups` groups, for the
    plan tests to fill in bulk: (owner id, campaign id, group ids)."""
    upgrade(engine)
    with make_sessionmaker(engine)() as db:
        user = factories.make_user(db)
        with factories.one_commit(db):
            campaign = factories.make_campaign(db, user)
            made = [factories.make_group(db, campaign) for _ in range(groups)]
        return user.id, campaign.id, [group.id for group in made]


def explain(conn: Any, stmt: Any, table: str) -> Any:
    """MariaDB's plan row for `table` in `stmt` (compiled with its values inline)."""
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    (row,) = [row for row in conn.execute(text("EXPLAIN " + sql)) if row.table == table]
    return row
