"""Alembic 0005 rewrites existing usernames to their normal form; collisions keep every account."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.engine import make_url

from app.db import make_engine
from app.migrations import upgrade
from app.models import User
from app.security import verify_password
from tests import factories

DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"


@pytest.fixture
def fresh_engine(db_leg: str, tmp_path: Path, engine: Engine) -> Iterator[Engine]:
    if db_leg == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'names.db'}")
        yield eng
        eng.dispose()
        return
    server = make_url(os.environ.get("TEST_MYSQL_URL", DEFAULT_MYSQL_URL))
    name = f"pixeltrack_names_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    eng = make_engine(server.set(database=name).render_as_string(hide_password=False))
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.mark.slow  # ~2.5 s: out of the fast loop
def test_0005_normalises_usernames_and_renames_later_collisions(fresh_engine: Engine, db_leg: str) -> None:
    upgrade(fresh_engine, "0004")
    names = ["Alice", "alice", "\uff22\uff2f\uff22", "carol", "ALICE", "Dave.Smith@Example.com"]
    if db_leg == "sqlite":
        names.append("carol ")  # MariaDB's PAD SPACE unique index never let this one exist
    hashed = factories._password_hash()
    with fresh_engine.begin() as conn:
        for name in names:
            conn.execute(insert(User).values(username=name, email="x@example.com", hashed_password=hashed))
        ids = {row[0]: row[1] for row in conn.execute(select(User.username, User.id))}

    upgrade(fresh_engine)

    with fresh_engine.connect() as conn:
        after = {row[0]: row[1] for row in conn.execute(select(User.id, User.username))}
        hashes = conn.scalars(select(User.hashed_password)).all()
    expected = {
        ids["Alice"]: "alice",  # the oldest keeps the name
        ids["alice"]: f"alice-{ids['alice']}",
        ids["\uff22\uff2f\uff22"]: "bob",
        ids["carol"]: "carol",
        ids["ALICE"]: f"alice-{ids['ALICE']}",
        ids["Dave.Smith@Example.com"]: "dave.smith@example.com",
    }
    if db_leg == "sqlite":
        expected[ids["carol "]] = f"carol-{ids['carol ']}"
    assert after == expected
    assert len(hashes) == len(names)  # nobody lost an account
    assert all(verify_password(factories.PASSWORD, h) for h in hashes)


def test_0005_on_an_empty_table_and_twice_is_a_no_op(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    upgrade(fresh_engine)
    with fresh_engine.connect() as conn:
        assert conn.scalars(select(User.id)).all() == []
