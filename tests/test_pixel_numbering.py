"""Automatic pixel numbering under concurrency, and the 409 of a uniqueness race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.main import create_app
from app.models import Pixel, User
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error
from tests.live import live_server

PARALLEL = 8


@pytest.mark.slow  # ~2.5 s: out of the fast loop
def test_parallel_automatic_numbers_all_succeed(
    db: Session, settings: Settings, user: User, headers: dict[str, str]
) -> None:
    campaign = factories.make_campaign(db, user)
    contact = factories.make_contact(db, factories.make_group(db, campaign))
    path = f"/api/v1/contacts/{contact.id}/pixels"
    with live_server(create_app(settings)) as base:
        # One client per request: separate connections, so the creates really overlap.
        def create(_: int) -> httpx.Response:
            with httpx.Client(base_url=base, timeout=30) as http:
                return http.post(path, headers=headers)

        for _round in range(3):
            with ThreadPoolExecutor(PARALLEL) as pool:
                responses = list(pool.map(create, range(PARALLEL)))
            assert [r.status_code for r in responses] == [201] * PARALLEL, [r.text for r in responses]
    db.commit()
    numbers = sorted(db.scalars(select(Pixel.number).where(Pixel.contact_id == contact.id)))
    assert numbers == list(range(1, 3 * PARALLEL + 1))


def test_a_uniqueness_race_is_a_409_with_the_documented_list_detail(settings: Settings) -> None:
    """The IntegrityError backstop (a race past the service's own checks) answers like every 409."""
    app = create_app(settings)

    @app.get("/test-only/race")
    def race() -> Any:
        raise IntegrityError("INSERT ...", {}, Exception("Duplicate entry"))

    with TestClient(app) as client:
        body = assert_error(client.get("/test-only/race"), 409, "conflict")
    assert body["detail"] == [{"loc": ["body"], "msg": "Conflicts with an existing object.", "type": "conflict"}]
