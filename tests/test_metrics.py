"""/metrics: business counters move by exactly the traffic sent; several uvicorn workers aggregate."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.clients import sync_redis
from app.main import create_asgi
from app.models import User
from app.settings import Settings
from app.tracking.worker import StreamWorker
from tests import factories
from tests.support.app_state import app_state, flush_memory
from tests.support.processes import free_port

VENV_BIN = Path(sys.executable).parent


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def scrape(client: Any) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return str(response.text)


@pytest.fixture
def app_client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_asgi(settings)) as client:
        yield client


def flush(client: TestClient) -> None:
    flush_memory(client)


def test_tracking_counters_move_by_exactly_the_traffic(app_client: TestClient, db: Session, user: User) -> None:
    tree = factories.make_tree(db, user)
    codec = app_state(app_client).tracker.codec
    before = scrape(app_client)
    pixel_url = f"/o/{codec.pixel_token(tree['pixel'].id)}.gif"
    ua = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}
    for _ in range(3):
        assert app_client.get(pixel_url, headers=ua).status_code == 200  # 1 recorded + 2 deduplicated
    proxy = {"User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"}
    for _ in range(2):  # the machine slot of the same pixel: 1 recorded + 1 deduplicated
        assert app_client.get(pixel_url, headers=proxy).status_code == 200
    for _ in range(4):
        assert app_client.get("/o/not-a-token.gif").status_code == 404
    assert (
        app_client.get(
            f"/c/{codec.click_token(tree['link'].id, tree['contact'].id)}", follow_redirects=False
        ).status_code
        == 302
    )
    flush(app_client)
    after = scrape(app_client)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("pixeltrack_tracking_requests_total", kind="open", first_pass="human", result="recorded") == 1
    assert delta("pixeltrack_tracking_requests_total", kind="open", first_pass="human", result="deduplicated") == 2
    assert delta("pixeltrack_tracking_requests_total", kind="open", first_pass="machine", result="recorded") == 1
    assert delta("pixeltrack_tracking_requests_total", kind="open", first_pass="machine", result="deduplicated") == 1
    assert delta("pixeltrack_tracking_requests_total", kind="open", result="invalid_token") == 4
    assert delta("pixeltrack_tracking_requests_total", kind="click", result="recorded") == 1
    assert delta("pixeltrack_events_inserted_total", kind="open", client="browser") == 1
    assert delta("pixeltrack_events_inserted_total", kind="open", client="gmail_proxy") == 1
    assert delta("pixeltrack_events_inserted_total", kind="click") == 1
    assert delta("pixeltrack_ingest_batch_size_count") >= 1
    # Label cardinality: no tenant, pixel, link or IP anywhere in the exposition
    # (tests/test_metrics_security.py scans every process after real traffic).
    for family in text_string_to_metric_families(after):
        for s in family.samples:
            assert not {"campaign_id", "group_id", "pixel_id", "contact_id", "link_id", "ip", "token"} & set(s.labels)


def test_http_metrics_count_api_requests_by_route_and_status(
    app_client: TestClient, settings: Settings, user: User
) -> None:
    headers = factories.headers_for(settings, user)
    before = scrape(app_client)
    for _ in range(5):
        assert app_client.get("/api/v1/campaigns", headers=headers).status_code == 200
    for _ in range(2):
        assert app_client.get("/api/v1/campaigns").status_code == 401
    after = scrape(app_client)
    route = {"handler": "/api/v1/campaigns", "method": "GET"}
    assert (
        sample(after, "http_requests_total", status="2xx", **route)
        - sample(before, "http_requests_total", status="2xx", **route)
        == 5
    )
    assert (
        sample(after, "http_requests_total", status="4xx", **route)
        - sample(before, "http_requests_total", status="4xx", **route)
        == 2
    )
    assert (
        sample(after, "http_request_duration_highr_seconds_count")
        - sample(before, "http_request_duration_highr_seconds_count")
        == 7
    )


def test_worker_metrics_and_gauges(
    settings: Settings, engine: Engine, redis_client: Any, redis_url: str, db: Session, user: User
) -> None:
    from prometheus_client import REGISTRY, generate_latest

    tree = factories.make_tree(db, user)
    with TestClient(create_asgi(settings.model_copy(update={"redis_url": redis_url}))) as client:
        codec = app_state(client).tracker.codec
        for number in range(2, 7):
            pixel = factories.make_pixel(db, tree["contact"], number=number)
            assert client.get(f"/o/{codec.pixel_token(pixel.id)}.gif").status_code == 200
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="m")
    worker.update_gauges()
    text = generate_latest(REGISTRY).decode()
    assert sample(text, "pixeltrack_stream_length") == 5
    assert sample(text, "pixeltrack_stream_lag") == 5
    assert sample(text, "pixeltrack_dependency_up", dependency="database") == 1
    assert sample(text, "pixeltrack_dependency_up", dependency="redis") == 1
    assert worker.drain() == 5
    worker.update_gauges()
    text = generate_latest(REGISTRY).decode()
    assert sample(text, "pixeltrack_stream_length") == 0
    assert sample(text, "pixeltrack_stream_pending") == 0


@pytest.mark.processes
@pytest.mark.sqlite_only
@pytest.mark.parametrize("existing", [True, False], ids=["existing-dir", "missing-dir"])
def test_two_uvicorn_workers_aggregate_metrics(tmp_path: Path, existing: bool) -> None:
    """`pixeltrack serve --workers 2`: every process writes to PROMETHEUS_MULTIPROC_DIR and
    /metrics (answered by either process) sums them: the count is exact whatever process
    took each request. A directory that does not exist yet is created."""
    port = free_port()
    multiproc = tmp_path / "multiproc"
    if existing:
        multiproc.mkdir()
        (multiproc / "counter_999999.db").write_bytes(b"stale")  # must be wiped at start
    else:
        multiproc = multiproc / "not" / "yet"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "REDIS_", "DATABASE_URL"))},
        "APP_ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'mp.db'}",
        "API_SECRET_KEY": "k" * 48,
        "FERNET_KEY": Fernet.generate_key().decode(),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [str(VENV_BIN / "pixeltrack"), "serve", "--port", str(port), "--workers", "2", "--no-sample"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        assert not (multiproc / "counter_999999.db").exists()
        n = 60
        for _ in range(n):  # a new connection each time: the kernel spreads them over both processes
            with httpx.Client(base_url=base, timeout=5) as client:
                assert client.get("/o/invalid-token.gif").status_code == 404
        pids = {p.name.rsplit("_", 1)[1].removesuffix(".db") for p in multiproc.glob("counter_*.db")}
        assert len(pids) >= 2, pids
        text = httpx.get(f"{base}/metrics", timeout=5).text
        assert sample(text, "pixeltrack_tracking_requests_total", kind="open", result="invalid_token") == n
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
