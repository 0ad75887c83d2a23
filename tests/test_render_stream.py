"""The render streams (issue #13 §1): a real server answers the first lines while it has prepared only
the first chunks, in bounded memory, and a broken stream resumes with `after_contact_id` without
creating anything twice."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from app.main import create_app
from app.models import Campaign, Contact, Pixel, User
from app.services import sendprep
from app.settings import Settings
from tests import factories
from tests.helpers import count
from tests.live import live_server

HTML = '<html><body><p>Hello <a href="https://shop.example.com/a">a</a> and <a href="https://shop.example.com/b">b</a></p></body></html>'


def _contacts(db: Session, user: User, n: int) -> tuple[Campaign, list[int]]:
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    for start in range(0, n, 10_000):
        rows = [
            {"campaign_id": campaign.id, "group_id": group.id, "email": f"c{i}@example.com", "status": "scheduled"}
            for i in range(start, min(n, start + 10_000))
        ]
        db.execute(insert(Contact), rows)
    db.commit()
    return campaign, list(db.scalars(select(Contact.id).where(Contact.campaign_id == campaign.id).order_by(Contact.id)))


def _pixels(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Pixel)) or 0


def test_a_broken_stream_resumes_after_the_last_line_received(
    settings: Settings,
    engine: Engine,
    db: Session,
    user: User,
    headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sendprep, "CHUNK", 200)
    campaign, ids = _contacts(db, user, 1500)
    received: list[dict[str, Any]] = []
    with live_server(create_app(settings)) as base, httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        path = f"/api/v1/campaigns/{campaign.id}/render"
        with http.stream("POST", path, json={"html": HTML}) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                received.append(json.loads(line))
                if len(received) == 333:
                    break  # the connection drops here
        resumed = http.post(path, json={"html": HTML, "after_contact_id": received[-1]["contact_id"]})
    received += [json.loads(line) for line in resumed.text.splitlines()]
    assert [line["contact_id"] for line in received] == ids
    assert count(db, Pixel) == len(ids)  # one each: what the broken stream created was kept and found again
    db.commit()
    assert db.scalar(select(func.count(func.distinct(Pixel.contact_id)))) == len(ids)


class _PeakRss(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.start_rss = self.peak = self.rss()
        self.done = threading.Event()

    @staticmethod
    def rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, self.rss())


@pytest.mark.slow  # 100,000 contacts: a minute or two
def test_100000_contacts_stream_without_the_whole_answer_in_memory(
    settings: Settings, engine: Engine, db: Session, user: User, headers: dict[str, str]
) -> None:
    total = 100_000
    html = HTML.replace("<p>", "<p>" + "Lorem ipsum dolor sit amet. " * 40)  # ~1.3 KB a line: 130 MB in all
    campaign, ids = _contacts(db, user, total)
    seen = {"lines": 0, "bytes": 0, "last": 0}

    def consume(line: bytes) -> None:
        contact_id = int(line[len(b'{"contact_id":') : line.index(b",")])
        assert contact_id > seen["last"]  # in contact-id order
        seen.update(lines=seen["lines"] + 1, bytes=seen["bytes"] + len(line) + 1, last=contact_id)

    with live_server(create_app(settings)) as base, httpx.Client(base_url=base, headers=headers, timeout=600) as http:
        memory = _PeakRss()
        memory.start()
        with http.stream("POST", f"/api/v1/campaigns/{campaign.id}/render", json={"html": html}) as response:
            assert response.status_code == 200
            chunks = response.iter_bytes()
            pending = next(chunks)
            # The first lines are here while the server has prepared (pixels) only its first chunks.
            assert pending.startswith(b'{"contact_id":')
            assert _pixels(engine) <= total // 4
            for piece in chunks:
                *complete, pending = (pending + piece).split(b"\n")
                for line in complete:
                    consume(line)
            assert pending == b""  # every line ends with its newline
        memory.done.set()
    assert (seen["lines"], seen["last"]) == (total, ids[-1])
    assert seen["bytes"] > 100 * 1024 * 1024
    # Server and client in this process: the 130 MB answer never was in memory at once.
    assert memory.peak - memory.start_rss < 100 * 1024 * 1024, (memory.start_rss, memory.peak)
    assert _pixels(engine) == total
