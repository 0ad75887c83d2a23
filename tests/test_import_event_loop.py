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


def test_chunks_cover_every_row_in_order_and_step_aside_between() -> None:
    from app import cooperative

    rows = list(range(1_201))
    started = time.perf_counter()
    seen = list(cooperative.chunks(rows, 500))
    assert [offset for offset, _ in seen] == [0, 500, 1000]
    assert [row for _, chunk in seen for row in chunk] == rows
    assert time.perf_counter() - started >= 2 * cooperative.PAUSE  # two pauses, none after the last
