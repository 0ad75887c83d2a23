"""The ingest's insert writes every value as given: user agents and addresses with quotes,
backslashes, percent signs, separators of other SQL dialects and any Unicode, exact times, and
NULLs; on MariaDB also with NO_BACKSLASH_ESCAPES (the insert is written as SQL text there,
app/tracking/ingest._values, escaped by the driver's own rules of the session)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from app.db import make_engine
from app.models import Click, Opening, User
from app.tracking.events import CLICK, OPEN, Event, new_event_id
from app.tracking.ingest import store_events
from tests import factories

ODD = [
    'it\'s "quoted"',
    "back\\slash \\' \\\\ end\\",
    "100% %s %(name)s %% {0}",
    "tab\tnew\nline\rcarriage\x1a sub",
    "naïve Ω 雪 🙂 \u202e",
    "'); DROP TABLE openings; --",
    "",
]


@pytest.fixture(params=["default", "no_backslash_escapes"])
def ingest_engine(request: pytest.FixtureRequest, engine: Engine, db_leg: str) -> Iterator[Engine]:
    if request.param == "default":
        yield engine
        return
    if db_leg != "mysql":
        pytest.skip("a MariaDB SQL mode")
    other = make_engine(engine.url.render_as_string(hide_password=False))

    @event.listens_for(other, "connect")
    def _mode(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")

    yield other
    other.dispose()


def test_odd_agents_and_addresses_are_stored_exactly(ingest_engine: Engine, db: Session, user: User) -> None:
    tree = factories.make_tree(db, user)
    pixels = [factories.make_pixel(db, tree["contact"], number=n + 2) for n in range(len(ODD))]
    link = factories.make_link(db, tree["campaign"])
    db.commit()
    at_ms = 1_780_000_000_123  # 2026-05-28 20:26:40.123 UTC
    opens = [
        Event(OPEN, pixel.id, 0, at_ms + i, "browser", f"203.0.113.{i}", agent, new_event_id())
        for i, (pixel, agent) in enumerate(zip(pixels, ODD, strict=True))
    ]
    nameless = Event(OPEN, tree["pixel"].id, 0, at_ms, "unknown", "", "", new_event_id())
    click = Event(CLICK, link.id, tree["contact"].id, at_ms, "browser", "::ffff:192.0.2.1", ODD[1], new_event_id())
    events = [(e.event_id, e) for e in (*opens, nameless, click)]

    result = store_events(ingest_engine, events)

    assert (result.inserted, result.duplicates, result.skipped_missing) == (len(events), 0, 0)
    db.expire_all()
    stored = {o.event_id: o for o in db.scalars(select(Opening).where(Opening.pixel_id.in_([p.id for p in pixels])))}
    for i, e in enumerate(opens):
        row = stored[e.event_id]
        assert (row.user_agent, row.ip, row.client) == (e.user_agent or None, e.ip, "browser")
        assert row.opened_at.replace(tzinfo=UTC) == datetime.fromtimestamp((at_ms + i) / 1000, UTC)
    empty = db.scalars(select(Opening).where(Opening.event_id == nameless.event_id)).one()
    assert (empty.ip, empty.user_agent, empty.pixel_id) == (None, None, tree["pixel"].id)
    clicked = db.scalars(select(Click).where(Click.event_id == click.event_id)).one()
    assert (clicked.user_agent, clicked.ip, clicked.contact_id) == (ODD[1], "::ffff:192.0.2.1", tree["contact"].id)
