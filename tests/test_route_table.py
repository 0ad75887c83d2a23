"""The shared route table (tests/support/routes.py) is the app's routes: none missing, none stale."""

from __future__ import annotations

from fastapi import FastAPI

from tests.support.routes import (
    API_CALLS,
    OWNED_KINDS,
    USER_KINDS,
    app_operations,
    item_paths,
    list_paths,
    owned_calls,
)


def test_every_api_route_is_in_the_table(app: FastAPI) -> None:
    served = app_operations(app)
    assert len(served) > 30, "the app's API routes were not found"
    assert served - {(call.method, call.template) for call in API_CALLS} == set(), "routes missing from API_CALLS"


def test_no_table_entry_is_stale(app: FastAPI) -> None:
    served = app_operations(app)
    assert {(call.method, call.template) for call in API_CALLS} - served == set(), "API_CALLS lists unknown routes"


def test_every_placeholder_is_a_known_kind() -> None:
    for call in API_CALLS:
        assert call.kinds <= OWNED_KINDS | USER_KINDS | {"user", "api_key"}, call.path


def test_derived_views_cover_every_kind() -> None:
    assert set(item_paths()) == OWNED_KINDS | USER_KINDS | {"user"}
    kinds = {"users", "api-keys", "campaigns", "groups", "contacts", "pixels", "openings", "links", "webhooks"}
    assert set(list_paths()) == kinds
    assert all(not call.admin_only for call in owned_calls())
