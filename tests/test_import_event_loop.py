"""A bulk import never holds the event loop: other requests are served while its rows validate."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from app.main import create_app
from app.models import Contact
from app.routers import contacts as contacts_router
from app.settings import Settings
from tests.helpers import count
from tests.live import live_server


class _GatedValidation:
    """Stands in for the bulk validator: signals that validation started, then holds it until the
    test says a concurrent request was answered (at most `hold` seconds)."""

    def __init__(self, real: Any, hold: float) -> None:
        self.real = real
        self.hold = hold
        self.started = threading.Event()
        self.release = threading.Event()

    def validate_python(self, raw: Any) -> Any:
        self.started.set()
        self.release.wait(self.hold)
        return self.real.validate_python(raw)


def test_other_requests_are_served_while_an_import_validates(
    settings: Settings,
    engine: Engine,
    headers: dict[str, str],
    tree: dict[str, Any],
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = _GatedValidation(contacts_router._BULK, hold=15.0)
    monkeypatch.setattr(contacts_router, "_BULK", gate)
    rows = [{"email": f"c{i}@example.com"} for i in range(1000)]
    group_id = tree["group"].id
    result: dict[str, Any] = {}
    app = create_app(settings)
    with live_server(app) as base:

        def import_rows() -> None:
            with httpx.Client(base_url=base, timeout=60.0) as http:
                result["import"] = http.post(f"/api/v1/groups/{group_id}/contacts", json=rows, headers=headers)

        importer = threading.Thread(target=import_rows)
        importer.start()
        try:
            assert gate.started.wait(30), "the import never reached validation"
            # The loop must answer while the rows are being validated (held by the gate).
            try:
                health = httpx.get(f"{base}/healthz", timeout=5.0)
            except httpx.TimeoutException:
                pytest.fail("/healthz got no answer while an import validated: the event loop is blocked")
            assert health.status_code == 200
            assert not gate.release.is_set()
        finally:
            gate.release.set()
            importer.join(60)
    assert result["import"].status_code == 201, result["import"].text[:300]
    body = result["import"].json()
    assert body["total"] == 1000
    assert [item["email"] for item in body["items"]] == [row["email"] for row in rows]
    assert count(db, Contact, group_id=group_id) == 1001  # and the tree's own contact


def test_server_process_hands_the_gil_over_often(settings: Settings) -> None:
    """The app factory shortens CPython's GIL switch interval (5 ms) for the server process, so
    the event loop waits at most SWITCH_INTERVAL for a threadpool thread doing CPU work."""
    from app import cooperative
    from app.main import create_asgi

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        create_asgi(settings)
        assert sys.getswitchinterval() == pytest.approx(cooperative.SWITCH_INTERVAL)
    finally:
        sys.setswitchinterval(before)


def test_chunks_cover_every_row_in_order_and_step_aside_between_while_others_wait() -> None:
    from app import cooperative

    rows = list(range(1_201))
    cooperative.arrived()  # a pixel request in flight
    try:
        started = time.perf_counter()
        seen = list(cooperative.chunks(rows, 500))
        paused = time.perf_counter() - started
    finally:
        cooperative.left()
    assert [offset for offset, _ in seen] == [0, 500, 1000]
    assert [row for _, chunk in seen for row in chunk] == rows
    assert paused >= 2 * cooperative.PAUSE  # two pauses, none after the last


def test_bulk_work_does_not_step_aside_for_itself_or_an_idle_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """No one else in flight: no pause (an idle server's import does not sleep); its own request
    marked `bulk()` does not count; any other request in flight does."""
    from app import cooperative

    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)  # (the module app.cooperative calls)
    assert not cooperative.others_waiting()
    list(cooperative.chunks(list(range(1_500)), 500))
    assert sleeps == []
    cooperative.arrived()  # the bulk request itself
    try:
        with cooperative.bulk():
            list(cooperative.chunks(list(range(1_500)), 500))
            assert sleeps == []
            cooperative.arrived()  # and a pixel
            try:
                assert cooperative.others_waiting()
                list(cooperative.chunks(list(range(1_500)), 500))
            finally:
                cooperative.left()
            assert len(sleeps) == 2
        assert cooperative.others_waiting()  # (outside `bulk()`, its own request counts)
    finally:
        cooperative.left()
    assert not cooperative.others_waiting()


def test_the_server_counts_every_http_request_in_flight() -> None:
    """TrackingFastPath (what uvicorn serves) counts pixel/click requests and the app's alike."""
    import asyncio

    from app import cooperative
    from app.tracking.asgi import TrackingFastPath

    seen: list[bool] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(cooperative.others_waiting())

    class Tracker:
        async def pixel(self, *_args: Any) -> tuple[int, list[Any], bytes]:
            seen.append(cooperative.others_waiting())
            return 200, [], b"GIF"

    class State:
        tracker = Tracker()

    async def send(_message: Any) -> None:
        return None

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    server = TrackingFastPath(inner, State())
    pixel = {"type": "http", "method": "GET", "path": "/o/abc.gif", "headers": [], "client": ("1.2.3.4", 1)}
    api = {"type": "http", "method": "POST", "path": "/api/v1/x", "headers": []}
    asyncio.run(server(pixel, receive, send))
    asyncio.run(server(api, receive, send))
    asyncio.run(server({"type": "lifespan"}, receive, send))
    assert seen == [True, True, False]
    assert not cooperative.others_waiting()
