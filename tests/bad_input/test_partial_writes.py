"""Semantic rejections (a bad row among many, a cross-campaign move) write nothing.

See tests/bad_input/conftest.py: never a 500, every rejection leaves every table as it was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.models import Group, User
from tests import factories
from tests.helpers import assert_error
from tests.support.bad_input import (
    ROUTES,
    Ctx,
    _rejected,
    _send,
    _snapshot,
)

# Semantic rejections that must not leave a partial write.


def test_contact_update_to_group_of_another_campaign_is_422(client, engine: Engine, db: Session, ctx: Ctx) -> None:
    other_campaign = factories.make_campaign(db, db.get_one(User, ctx.ids["user"]))
    foreign_group = factories.make_group(db, other_campaign)
    route = next(r for r in ROUTES if r.name == "contact-update")
    for group_id in (foreign_group.id, 2**63 - 1):
        raw = json.dumps({"name": "should not stick", "group_id": group_id}).encode()
        _rejected(client, engine, ctx, route, raw)


def test_campaign_update_with_dates_out_of_order_changes_nothing(client, engine: Engine, ctx: Ctx) -> None:
    route = next(r for r in ROUTES if r.name == "campaign-update")
    raw = json.dumps(
        {"name": "should not stick", "starts_at": "2026-05-02T00:00:00Z", "ends_at": "2026-05-01T00:00:00Z"}
    ).encode()
    _rejected(client, engine, ctx, route, raw)


def test_bulk_with_one_bad_row_among_many_writes_nothing(client, engine: Engine, ctx: Ctx) -> None:
    route = next(r for r in ROUTES if r.name == "contact-bulk")
    rows: list[dict[str, Any]] = [{"email": f"bulk{i}@example.com"} for i in range(2000)]
    rows[1500] = {"email": "not-an-email"}
    before = _snapshot(engine)
    body = assert_error(_send(client, ctx, route, json.dumps(rows).encode()), 422, "validation_error")
    assert [item["loc"] for item in body["detail"]] == [["body", 1500, "email"]]
    assert _snapshot(engine) == before


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(
            [{"email": "dup@example.com"}, {"email": "other@example.com"}, {"email": "dup@example.com"}],
            id="in-request",
        ),
        pytest.param([{"email": "fresh@example.com"}, {"email": "EXISTING@example.com"}], id="already-in-group"),
    ],
)
def test_bulk_with_duplicate_writes_nothing(client, engine: Engine, db: Session, ctx: Ctx, rows: list[Any]) -> None:
    factories.make_contact(db, db.get_one(Group, ctx.ids["group"]), email="existing@example.com")
    route = next(r for r in ROUTES if r.name == "contact-bulk")
    before = _snapshot(engine)
    body = assert_error(_send(client, ctx, route, json.dumps(rows).encode()), 409, "conflict")
    assert body["detail"][0]["loc"][:2] == ["body", len(rows) - 1]
    assert _snapshot(engine) == before


def test_bulk_over_10000_rows_is_422(client, engine: Engine, ctx: Ctx) -> None:
    route = next(r for r in ROUTES if r.name == "contact-bulk")
    rows = [{"email": f"c{i}@example.com"} for i in range(10_001)]
    _rejected(client, engine, ctx, route, json.dumps(rows).encode())


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([{"email": "ok@example.com"}, "not an object"], id="string-row"),
        pytest.param([{"email": "ok@example.com"}, None], id="null-row"),
        pytest.param([{"email": "ok@example.com"}, [{"email": "nested@example.com"}]], id="nested-list"),
    ],
)
def test_bulk_with_non_object_row_is_422(client, engine: Engine, ctx: Ctx, rows: list[Any]) -> None:
    route = next(r for r in ROUTES if r.name == "contact-bulk")
    body = _rejected(client, engine, ctx, route, json.dumps(rows).encode())
    assert body["detail"][0]["loc"][:2] == ["body", 1]
