"""Assertions shared by the tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session


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
