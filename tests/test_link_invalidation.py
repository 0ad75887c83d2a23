"""A link edit reaches the click redirects of every API process at once when Redis is configured
(pub/sub invalidation of LinkCache); without Redis, other processes follow within the cache TTL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.main import create_asgi
from app.models import User
from app.settings import Settings
from app.tracking.tracker import LINKS_CHANGED
from tests import factories
from tests.support.processes import wait_until

OLD, NEW = "https://example.com/old", "https://example.com/new"


@pytest.fixture
def two_processes(settings: Settings, redis_client: Any, redis_url: str) -> Iterator[tuple[TestClient, TestClient]]:
    """Two API processes (each its own app, tracking runtime and link cache) on one Redis."""
    with_redis = settings.model_copy(update={"redis_url": redis_url})
    with TestClient(create_asgi(with_redis)) as first, TestClient(create_asgi(with_redis)) as second:
        yield first, second


def _location(client: TestClient, path: str) -> str:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def _click_path(client: TestClient, headers: dict[str, str], link_id: int, contact_id: int) -> str:
    response = client.get(f"/api/v1/links/{link_id}/url", params={"contact_id": contact_id}, headers=headers)
    assert response.status_code == 200, response.text
    url: str = response.json()["url"]
    return url[url.index("/c/") :]


def test_an_edit_in_one_process_reaches_the_clicks_of_another_at_once(
    two_processes: tuple[TestClient, TestClient], db: Session, user: User, headers: dict[str, str]
) -> None:
    first, second = two_processes
    tree = factories.make_tree(db, user)
    link = factories.make_link(db, tree["campaign"], url=OLD)
    path = _click_path(first, headers, link.id, tree["contact"].id)
    assert _location(second, path) == OLD  # now cached in the second process (TTL 10 s)

    edited = first.patch(f"/api/v1/links/{link.id}", json={"url": NEW}, headers=headers)
    assert edited.status_code == 200, edited.text
    started = time.monotonic()
    wait_until(lambda: _location(second, path) == NEW, "the other process to redirect to the new URL", timeout=3)
    assert time.monotonic() - started < 3  # far below the 10 s the cache would otherwise keep it

    assert first.delete(f"/api/v1/links/{link.id}", headers=headers).status_code == 204
    wait_until(
        lambda: second.get(path, follow_redirects=False).status_code == 404,
        "the other process to forget the deleted link",
        timeout=3,
    )


def test_changes_are_published_by_link_id(
    two_processes: tuple[TestClient, TestClient], redis_client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    first, _second = two_processes
    link = factories.make_link(db, factories.make_campaign(db, user), url=OLD)
    listener = redis_client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(LINKS_CHANGED)
    try:
        assert first.patch(f"/api/v1/links/{link.id}", json={"name": "renamed"}, headers=headers).status_code == 200
        message = wait_until(lambda: listener.get_message(timeout=0.1), "the change to be published", timeout=3)
        assert message["data"] == str(link.id)
    finally:
        listener.close()


def test_a_link_edit_answers_even_when_redis_is_gone(
    settings: Settings, db: Session, user: User, headers: dict[str, str]
) -> None:
    """Redis configured but unreachable: the edit is saved (the other processes fall back to the TTL)."""
    from tests.support.processes import free_port

    unreachable = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    link = factories.make_link(db, factories.make_campaign(db, user), url=OLD)
    with TestClient(create_asgi(unreachable)) as client:
        edited = client.patch(f"/api/v1/links/{link.id}", json={"url": NEW}, headers=headers)
        assert edited.status_code == 200, edited.text
        assert edited.json()["url"] == NEW
