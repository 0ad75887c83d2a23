"""Dedupe per first-pass split: within the window, one machine and one human event of each pixel
(and of each link + contact) are recorded, so a proxy's prefetch or a scanner never swallows the
person's own open or click. Both queues: embedded (in-process) and Redis + worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.clients import sync_redis
from app.main import create_asgi
from app.models import Click, Opening, User
from app.settings import Settings
from app.tracking.worker import StreamWorker
from tests import factories
from tests.support.app_state import app_state, flush_memory

BROWSER = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}
GMAIL_PROXY = {
    "User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
}
PREFETCH = {**BROWSER, "Sec-Purpose": "prefetch"}

Tracked = tuple[TestClient, Callable[[], None]]  # the app, and how to make its events land


@pytest.fixture(params=["embedded", "redis"])
def tracked(request: pytest.FixtureRequest, settings: Settings, engine: Engine) -> Iterator[Tracked]:
    if request.param == "embedded":
        with TestClient(create_asgi(settings)) as client:
            yield client, lambda: flush_memory(client)
        return
    redis_url: str = request.getfixturevalue("redis_url")
    request.getfixturevalue("redis_client")  # a private server, emptied after the test
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="first-pass", block_ms=10)
    with TestClient(create_asgi(settings.model_copy(update={"redis_url": redis_url}))) as client:
        yield client, lambda: (worker.drain(), None)[1]


def _clients(db: Session, model: Any, *, after: int = 0, **where: int) -> list[str]:
    """The client classes of the stored rows (ids above `after`), in the order they were stored."""
    db.expire_all()
    query = select(model.client).filter_by(**where).where(model.id > after).order_by(model.id)
    return list(db.scalars(query))


def test_a_machine_load_does_not_swallow_the_later_human_open(tracked: Tracked, db: Session, user: User) -> None:
    client, land = tracked
    tree = factories.make_tree(db, user)
    pixel = tree["pixel"]
    url = f"/o/{app_state(client).tracker.codec.pixel_token(pixel.id)}.gif"
    loads = [GMAIL_PROXY, GMAIL_PROXY, PREFETCH, BROWSER, BROWSER]  # proxy first, then the person
    assert [client.get(url, headers=h).status_code for h in loads] == [200] * 5
    assert client.head(url, headers=BROWSER).status_code == 200  # machine slot: already taken
    land()
    assert _clients(db, Opening, pixel_id=pixel.id, after=tree["opening"].id) == ["gmail_proxy", "browser"]


def test_a_scanner_click_does_not_swallow_the_later_human_click(tracked: Tracked, db: Session, user: User) -> None:
    client, land = tracked
    tree = factories.make_tree(db, user)
    url = f"/c/{app_state(client).tracker.codec.click_token(tree['link'].id, tree['contact'].id)}"
    assert client.head(url, headers=BROWSER, follow_redirects=False).status_code == 302  # a scanner's HEAD
    for _ in range(2):
        assert client.get(url, headers=BROWSER, follow_redirects=False).status_code == 302
    land()
    assert _clients(db, Click, link_id=tree["link"].id) == ["bot", "browser"]
