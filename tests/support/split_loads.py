"""Pixel loads and clicks through the real app, a human and a machine load of each pixel (one
event per pixel and split), and the rows they left: what the partition and cluster tests share."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Contact, Link, Pixel
from tests.support.app_state import app_state

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}
GMAIL_PROXY = {
    "User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
}


def load_targets(client: TestClient, pixels: list[Pixel], links: list[Link], contact: Contact, rounds: int) -> None:
    """Each round loads every pixel as a browser and as Gmail's proxy and follows every link once."""
    codec = app_state(client).tracker.codec
    for _ in range(rounds):
        for pixel in pixels:
            for headers in (BROWSER, GMAIL_PROXY):
                assert client.get(f"/o/{codec.pixel_token(pixel.id)}.gif", headers=headers).status_code == 200
        for link in links:
            url = f"/c/{codec.click_token(link.id, contact.id)}"
            assert client.get(url, headers=BROWSER, follow_redirects=False).status_code == 302


def rows_per(db: Session, model: Any, column: Any, ids: list[int]) -> dict[int, int]:
    """Stored rows of `model` per value of `column` among `ids`."""
    db.expire_all()
    query = select(column, func.count()).select_from(model).where(column.in_(ids)).group_by(column)
    return {int(target): int(count) for target, count in db.execute(query).all()}
