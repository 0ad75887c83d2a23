"""A MariaDB deadlock (1213) or lock wait timeout (1205) runs the whole transaction again:
the request's (app/routing.TransactionRoute) and the ingest batch's (app/db.retrying).

The database errors are real pymysql errors raised on the real MariaDB connection from a
`before_cursor_execute` hook (as the driver raises them when InnoDB picks a victim), so
the path through SQLAlchemy, the route and the error handlers is the production one. The
races that cause real deadlocks are in tests/test_delete_while_ingesting.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pymysql
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from app.db import RETRY_ATTEMPTS
from app.models import Contact, Opening, Pixel, User
from app.settings import Settings
from app.tracking.events import OPEN, Event, new_event_id
from app.tracking.ingest import store_events
from tests import factories
from tests.helpers import assert_error, count
from tests.support.app_state import app_state

pytestmark = pytest.mark.mysql_only  # MariaDB's error codes; SQLite has no deadlocks (one writer)

DEADLOCK = (1213, "Deadlock found when trying to get lock; try restarting transaction")


@contextmanager
def failing(engine: Engine, prefix: str, times: int, error: tuple[int, str] = DEADLOCK) -> Iterator[list[str]]:
    """The first `times` statements starting with `prefix` fail with `error`; yields the list
    of every matching statement run (failed ones included)."""
    seen: list[str] = []

    def hook(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith(prefix):
            seen.append(statement)
            if len(seen) <= times:
                raise pymysql.err.OperationalError(*error)

    event.listen(engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", hook)


def _engine(client: TestClient) -> Engine:
    engine: Engine = app_state(client).engine
    return engine


def test_a_deadlocked_request_runs_again_with_the_same_body(
    client: TestClient, db: Session, user: User, settings: Settings
) -> None:
    group = factories.make_tree(db, user)["group"]
    rows = [{"email": f"retry{n}@example.com", "name": f"Row {n}"} for n in range(3)]
    with failing(_engine(client), "INSERT INTO contacts", times=1) as seen:
        response = client.post(
            f"/api/v1/groups/{group.id}/contacts", json=rows, headers=factories.headers_for(settings, user)
        )
    assert response.status_code == 201, response.text
    assert len(seen) == 2  # the deadlocked run, then the one that committed
    assert [item["email"] for item in response.json()["items"]] == [row["email"] for row in rows]
    assert count(db, Contact, Contact.email.in_([row["email"] for row in rows])) == 3


def test_retries_are_bounded_then_the_answer_is_503(
    client: TestClient, db: Session, user: User, settings: Settings
) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    with failing(_engine(client), "DELETE FROM pixels", times=RETRY_ATTEMPTS + 5) as seen:
        response = client.delete(f"/api/v1/pixels/{pixel.id}", headers=factories.headers_for(settings, user))
    assert_error(response, 503, "service_unavailable")
    assert len(seen) == RETRY_ATTEMPTS
    assert count(db, Pixel, id=pixel.id) == 1


def test_other_database_errors_are_not_retried(client: TestClient, db: Session, user: User, settings: Settings) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    lost = (2013, "Lost connection to server during query")
    with failing(_engine(client), "DELETE FROM pixels", times=1, error=lost) as seen:
        response = client.delete(f"/api/v1/pixels/{pixel.id}", headers=factories.headers_for(settings, user))
    assert_error(response, 503, "service_unavailable")
    assert len(seen) == 1


@pytest.mark.parametrize("code", [1213, 1205])
def test_a_deadlocked_ingest_batch_runs_again(engine: Engine, db: Session, user: User, code: int) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    at_ms = int(datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp() * 1000)
    event_id = new_event_id()
    batch = [(event_id, Event(OPEN, pixel.id, 0, at_ms, "browser", "", "", event_id))]
    with failing(engine, "INSERT IGNORE INTO openings", times=2, error=(code, "lock trouble")) as seen:
        result = store_events(engine, batch)
    assert len(seen) == 3
    assert (result.inserted, result.duplicates, result.skipped_missing) == (1, 0, 0)
    db.commit()
    assert db.scalars(select(Opening.pixel_id).where(Opening.event_id == event_id)).all() == [pixel.id]
