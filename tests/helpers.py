"""Assertions shared by the tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from app.models import CampaignHour, ContactStats, GroupCounts
from app.services import counters


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape: {"detail": ..., "code": "..."} with the expected status."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"detail", "code"}, body
    if code is not None:
        assert body["code"] == code, body
    return body


def count(db: Session, model: Any, *where: Any, **equals: Any) -> int:
    """Rows as committed now. Commits first to end the session's snapshot: MariaDB is
    REPEATABLE READ, so an open transaction would not see what the API wrote since."""
    db.commit()
    stmt = select(func.count()).select_from(model).where(*where)
    for column, value in equals.items():
        stmt = stmt.where(getattr(model, column) == value)
    return db.scalar(stmt) or 0


def reload(db: Session, model: Any, obj_id: int) -> Any:
    db.commit()
    db.expire_all()
    return db.get(model, obj_id)


def parse_ts(value: str) -> datetime:
    """An API timestamp: ISO-8601 in UTC with an explicit +00:00 offset."""
    assert value.endswith("+00:00"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


def counter_snapshot(conn: Connection) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """The report counters: table → key → row (rows of zeros left out: the same as no row)."""
    return {
        "contact": {row.contact_id: tuple(row) for row in conn.execute(select(ContactStats))},
        "group": {
            (row.campaign_id, row.group_id): tuple(row)
            for row in conn.execute(select(GroupCounts))
            if any(getattr(row, name) for name in counters.GROUP_COUNTERS)
        },
        "hour": {
            (row.campaign_id, row.hour): (row.opens, row.clicks)
            for row in conn.execute(select(CampaignHour))
            if row.opens or row.clicks
        },
    }


def snapshot_diff(kept: dict[str, dict[Any, Any]], fresh: dict[str, dict[Any, Any]]) -> list[str]:
    return [
        f"{table} {k}: {kept[table].get(k)} != {fresh[table].get(k)}"
        for table in kept
        for k in kept[table].keys() | fresh[table].keys()
        if kept[table].get(k) != fresh[table].get(k)
    ]


def counter_drift(conn: Connection) -> list[str]:
    """Differences between the report counters and a recompute of them from the rows
    (rolls its own changes back when `conn` is in a transaction the caller discards)."""
    kept = counter_snapshot(conn)
    counters.rebuild(conn)
    return snapshot_diff(kept, counter_snapshot(conn))
