"""The factories write from the tests' reading session (tests/conftest.db: on SQLite a snapshot
reader) while the app writes from other connections: a factory call after someone else committed
past the session's snapshot must still write (SQLite refuses at once to upgrade a stale snapshot:
"database is locked"; tests/factories._writing). This failed a CI run in
test_metrics_security, the app's in-process flusher committing between a read and a factory."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, Pixel, User
from tests import factories


@pytest.mark.parametrize("in_one_commit", [False, True])
def test_a_factory_writes_after_another_connection_committed_past_the_snapshot(
    engine: Engine, db: Session, user: User, in_one_commit: bool
) -> None:
    tree = factories.make_tree(db, user)
    assert db.scalar(select(func.count(Contact.id))) == 1  # the session now reads in a snapshot
    with engine.begin() as conn:  # another connection commits past it
        conn.execute(update(Campaign).where(Campaign.id == tree["campaign"].id).values(name="renamed"))
    if in_one_commit:
        with factories.one_commit(db):
            pixel = factories.make_pixel(db, tree["contact"], number=2)
    else:
        pixel = factories.make_pixel(db, tree["contact"], number=2)
    with engine.connect() as conn:
        assert conn.scalar(select(Pixel.number).where(Pixel.id == pixel.id)) == 2
        assert conn.scalar(select(Campaign.name).where(Campaign.id == tree["campaign"].id)) == "renamed"
