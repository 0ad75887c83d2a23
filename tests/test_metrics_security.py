"""/metrics carries no tenant data and is not public: METRICS_TOKEN, METRICS_BIND, no tenant labels.

- The API's /metrics and the worker's (a real `pixeltrack worker` process) answer 401 in the
  one error shape without `Authorization: Bearer METRICS_TOKEN` when it is set, 200 with it.
- METRICS_BIND moves the API's /metrics to a separate listener: 404 on the public app.
- After real traffic (CRUD, pixel loads and clicks through the in-process queue and through
  Redis + the worker), no metric family of either process has a label naming a tenant object
  (campaign, group, contact, webhook, user) nor a label value equal to a tenant id.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.main import create_asgi
from app.models import Campaign, Contact, Group, User
from app.settings import Settings
from tests import factories
from tests.support.app_state import app_state
from tests.support.processes import free_port, stop_process, wait_until

VENV_BIN = Path(sys.executable).parent
TOKEN = "metrics-token-for-tests-0123456789"
TENANT_WORDS = ("campaign", "group", "contact", "webhook", "user", "owner", "tenant")
SEED_ID = 900_001
NOT_IDS = {"le", "quantile"}  # bucket bounds and quantiles are numbers, never ids


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "not_authenticated"
    assert set(response.json()) == {"detail", "code"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in response.text


def _tenant_labels(text: str, tenant_ids: set[str]) -> list[str]:
    """Every (metric, label) pair naming a tenant object or carrying a tenant id as its value."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for name, value in sample.labels.items():
                if any(word in name.lower() for word in TENANT_WORDS):
                    found.append(f"{sample.name}: label {name}")
                elif name not in NOT_IDS and value in tenant_ids:
                    found.append(f"{sample.name}: {name}={value} is a tenant id")
    return found


def _worker(settings: Settings, redis_url: str, port: int, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(VENV_BIN / "pixeltrack"), "worker", "--consumer", "metrics-security"],
        env={
            **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            "APP_ENV": "test",
            "DATABASE_URL": settings.sqlalchemy_url,
            "REDIS_URL": redis_url,
            "API_SECRET_KEY": settings.secret_key(),
            "FERNET_KEY": settings.fernet_keys()[0],
            "WORKER_METRICS_PORT": str(port),
            "WORKER_METRICS_HOST": "127.0.0.1",
            "METRICS_TOKEN": TOKEN,
            "LOG_LEVEL": "WARNING",
        },
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _inserted(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "pixeltrack_events_inserted_total"
    )


# --- METRICS_TOKEN on the API ----------------------------------------------------------------


@pytest.fixture
def guarded(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_asgi(settings.model_copy(update={"metrics_token": SecretStr(TOKEN)}))) as client:
        yield client


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", f"{TOKEN}"],
    ids=["none", "wrong", "basic", "longer", "empty-bearer", "no-scheme"],
)
def test_api_metrics_refuse_requests_without_the_token(guarded: TestClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    _assert_unauthorized(guarded.get("/metrics", headers=headers))


def test_api_metrics_answer_with_the_token(guarded: TestClient) -> None:
    for headers in (_bearer(), {"Authorization": f"bearer {TOKEN}"}):
        response = guarded.get("/metrics", headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        assert "pixeltrack_tracking_requests_total" in response.text


def test_api_metrics_stay_open_when_no_token_is_configured(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200


# --- METRICS_BIND ------------------------------------------------------------------------------


@pytest.mark.processes
def test_metrics_bind_serves_metrics_on_a_separate_listener_only(settings: Settings, engine: Engine) -> None:
    port = free_port()
    bound = settings.model_copy(update={"metrics_bind": f"127.0.0.1:{port}", "metrics_token": SecretStr(TOKEN)})
    url = f"http://127.0.0.1:{port}/metrics"
    with TestClient(create_asgi(bound)) as client:
        public = client.get("/metrics", headers=_bearer())
        assert public.status_code == 404
        assert public.json()["code"] == "not_found"
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]
        assert client.get("/api/v1/campaigns").status_code == 401  # counted by the HTTP metrics
        assert client.get("/o/not-a-token.gif").status_code == 404  # counted by the business metrics
        _assert_unauthorized(httpx.get(url, timeout=5))
        text = httpx.get(url, headers=_bearer(), timeout=5).text
        assert 'http_requests_total{handler="/api/v1/campaigns",method="GET",status="4xx"}' in text
        assert "pixeltrack_tracking_requests_total" in text
        assert httpx.get(f"http://127.0.0.1:{port}/other", headers=_bearer(), timeout=5).status_code == 404
    with pytest.raises(httpx.TransportError):  # closed with the app
        httpx.get(url, headers=_bearer(), timeout=2)


# --- no tenant identifier is a label, on the API or the worker ---------------------------------


def _high_ids(db: Session) -> User:
    """An admin and a campaign/group/contact with ids far above small numbers (gc generations, …):
    every tenant object created afterwards gets a larger id, so a label value equal to one is not
    a coincidence."""
    admin = User(id=SEED_ID, username="boss", email="boss@example.com", hashed_password="x", is_admin=True)
    db.add(admin)
    db.commit()
    campaign = factories.make_campaign(db, admin, id=SEED_ID)
    factories.make_contact(db, factories.make_group(db, campaign, id=SEED_ID), id=SEED_ID)
    return admin


@pytest.mark.slow  # ~5 s: out of the fast loop
def test_no_tenant_identifier_is_a_label_on_any_process(
    settings: Settings, engine: Engine, redis_url: str, redis_client: Any, db: Session, tmp_path: Path
) -> None:
    headers = factories.headers_for(settings, _high_ids(db))
    worker_port = free_port()
    worker = _worker(settings, redis_url, worker_port, tmp_path)
    worker_url = f"http://127.0.0.1:{worker_port}/metrics"
    loads = 0
    try:
        # Embedded (in-process queue) and Redis + worker: both insert paths count events.
        for redis in (None, redis_url):
            app_settings = settings.model_copy(update={"redis_url": redis, "metrics_token": SecretStr(TOKEN)})
            with TestClient(create_asgi(app_settings)) as client:
                codec = app_state(client).tracker.codec
                other = client.post("/api/v1/users", headers=headers, json=_user(loads)).json()["id"]
                campaign = client.post("/api/v1/campaigns", headers=headers, json={"name": f"c{loads}"}).json()["id"]
                assert client.get(f"/api/v1/users/{other}", headers=headers).status_code == 200
                for arm in ("A", "B"):
                    group = client.post(
                        f"/api/v1/campaigns/{campaign}/groups", headers=headers, json={"name": arm}
                    ).json()["id"]
                    created = client.post(
                        f"/api/v1/groups/{group}/contacts", headers=headers, json={"email": f"{arm}{loads}@example.com"}
                    )
                    assert created.status_code == 201, created.text
                    contact = db.get(Contact, created.json()["id"])
                    assert contact is not None
                    pixel = factories.make_pixel(db, contact)
                    link = factories.make_link(db, db.get_one(Campaign, campaign))
                    ua = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0"}
                    assert client.get(f"/o/{codec.pixel_token(pixel.id)}.gif", headers=ua).status_code == 200
                    click = client.get(f"/c/{codec.click_token(link.id, contact.id)}", follow_redirects=False)
                    assert click.status_code == 302
                    loads += 2
                    assert client.get(f"/api/v1/contacts/{contact.id}", headers=headers).status_code == 200
                    assert client.get(f"/api/v1/campaigns/{campaign}/stats", headers=headers).status_code == 200
                api_text = client.get("/metrics", headers=_bearer()).text
        db.expire_all()
        tenant_ids = {str(i) for model in (Campaign, Group, Contact, User) for i in db.scalars(select(model.id))}
        assert len(db.scalars(select(Contact.id)).all()) == 5, "the seed + two campaigns of two groups of one contact"
        assert min(int(i) for i in tenant_ids) == SEED_ID
        assert len(tenant_ids) >= 5
        # The worker inserted the Redis half (and says so), with the token only.
        wait_until(lambda: _scrape(worker_url, worker) >= loads / 2, "the worker to insert the Redis events")
        _assert_unauthorized(httpx.get(worker_url, timeout=5))
        worker_text = httpx.get(worker_url, headers=_bearer(), timeout=5).text
    finally:
        stop_process(worker)
    assert _inserted(api_text) >= loads / 2, "the embedded path inserted its half"
    assert not _tenant_labels(api_text, tenant_ids), _tenant_labels(api_text, tenant_ids)
    assert not _tenant_labels(worker_text, tenant_ids), _tenant_labels(worker_text, tenant_ids)


def test_the_tenant_scan_catches_a_tenant_label() -> None:
    """The scanner above is not vacuous: the label main used to carry is reported."""
    text = 'pixeltrack_events_inserted_total{kind="open",campaign_id="7",group_id="9",client="browser"} 1.0\n'
    assert len(_tenant_labels(text, {"7", "9"})) == 2
    assert _tenant_labels('x_total{kind="open",shard="7"} 1.0\n', {"7"}) == ["x_total: shard=7 is a tenant id"]
    assert not _tenant_labels('x_bucket{le="7"} 1.0\n', {"7"})


def _user(n: int) -> dict[str, str]:
    return {"username": f"bob{n}", "email": f"bob{n}@example.com", "password": "a-long-password-123"}


def _scrape(url: str, proc: subprocess.Popen[bytes]) -> float:
    assert proc.poll() is None, "the worker exited"
    try:
        response = httpx.get(url, headers=_bearer(), timeout=2)
    except httpx.TransportError:
        return -1.0
    return _inserted(response.text) if response.status_code == 200 else -1.0


@pytest.mark.processes
@pytest.mark.sqlite_only
def test_metrics_bind_with_two_uvicorn_workers_answers_the_sum_on_every_connection(tmp_path: Path) -> None:
    """`pixeltrack serve --workers 2` with METRICS_BIND: both processes bind the listener
    (SO_REUSEPORT); whichever answers, the count is the sum of both, and the public port has none."""
    port, metrics_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "REDIS_", "DATABASE_URL", "METRICS_"))},
        "APP_ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bind.db'}",
        "API_SECRET_KEY": "k" * 48,
        "FERNET_KEY": Fernet.generate_key().decode(),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        "METRICS_BIND": f"127.0.0.1:{metrics_port}",
        "METRICS_TOKEN": TOKEN,
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [str(VENV_BIN / "pixeltrack"), "serve", "--port", str(port), "--workers", "2", "--no-sample"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base, metrics_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        wait_until(lambda: _status(f"{base}/healthz", proc) == 200, "serve to answer", timeout=60)
        pids = wait_until(
            lambda: _pids(tmp_path / "multiproc") if len(_pids(tmp_path / "multiproc")) >= 2 else None,
            "both workers",
            timeout=60,
        )
        assert pids is not None
        assert len(pids) >= 2
        n = 40
        for _ in range(n):  # a new connection each time: the kernel spreads them over both processes
            assert httpx.get(f"{base}/o/invalid-token.gif", timeout=5).status_code == 404
        assert httpx.get(f"{base}/metrics", headers=_bearer(), timeout=5).status_code == 404
        for _ in range(10):  # new connections again: each may reach either process's listener
            _assert_unauthorized(httpx.get(metrics_url, timeout=5))
            text = httpx.get(metrics_url, headers=_bearer(), timeout=5).text
            invalid = sum(
                s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name == "pixeltrack_tracking_requests_total" and s.labels.get("result") == "invalid_token"
            )
            assert invalid == n
    finally:
        stop_process(proc)


def _status(url: str, proc: subprocess.Popen[bytes]) -> int:
    assert proc.poll() is None, "serve exited"
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.TransportError:
        return 0


def _pids(directory: Path) -> set[str]:
    return {p.name.rsplit("_", 1)[1].removesuffix(".db") for p in directory.glob("*_*.db")}
