"""The HTTP metrics' `handler` label: remembered per route (app/metrics._RouteLabels), the same
labels as prometheus-fastapi-instrumentator's own per-request lookup gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_fastapi_instrumentator import routing
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.requests import Request

from app import metrics
from app.main import create_app, create_asgi
from app.models import User
from app.settings import Settings
from tests import factories

# (method, path): ids, several ids per path, unknown ids, 404s, untemplated paths, a method the
# route does not have, trailing-slash redirects (labelled with the path itself), docs and static.
REQUESTS = [
    ("GET", "/healthz"),
    ("GET", "/auth/me"),
    ("GET", "/api/v1/campaigns"),
    ("GET", "/api/v1/campaigns/5"),
    ("GET", "/api/v1/campaigns/123456789"),
    ("PATCH", "/api/v1/campaigns/7"),
    ("DELETE", "/api/v1/campaigns/7"),
    ("PUT", "/api/v1/campaigns/7"),
    ("GET", "/api/v1/campaigns/abc"),
    ("GET", "/api/v1/campaigns/5/"),
    ("GET", "/api/v1/campaigns/6/"),
    ("GET", "/api/v1/campaigns/0/"),
    ("GET", "/api/v1/campaigns/"),
    ("GET", "/api/v1/groups/12/contacts"),
    ("GET", "/api/v1/groups/13/contacts"),
    ("GET", "/api/v1/nothing/5"),
    ("GET", "/api/v1/nothing/6"),
    ("GET", "/api/v1/nothing/6/more/7"),
    ("GET", "/42"),
    ("GET", "/43"),
    ("GET", "/"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/static-offline-docs/swagger-ui.css"),
    ("POST", "/auth/token"),
    ("GET", "/auth/token"),
]


def _labeller(app: FastAPI) -> metrics._RouteLabels:
    layer = app.build_middleware_stack()
    while not isinstance(layer, metrics._RouteLabels):
        layer = layer.app  # type: ignore[attr-defined]
    return layer


def _request(app: FastAPI, method: str, path: str) -> Request:
    return Request({"type": "http", "method": method, "path": path, "root_path": "", "app": app, "headers": []})


def test_handler_labels_match_the_library(settings: Settings) -> None:
    app = create_app(settings)
    labeller = _labeller(app)
    for _ in range(3):  # first the lookups, then the remembered answers, in another order
        for method, path in REQUESTS:
            library = PrometheusInstrumentatorMiddleware._get_handler(labeller, _request(app, method, path))
            assert labeller._get_handler(_request(app, method, path)) == library, (method, path)
        REQUESTS.reverse()
    assert labeller._labels  # answers were remembered


def test_remembered_labels_are_bounded(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "ROUTE_LABELS_CACHED", 10)
    app = create_app(settings)
    labeller = _labeller(app)
    for n in range(100):
        labeller._get_handler(_request(app, "GET", f"/nothing-{n}"))
        assert len(labeller._labels) <= 10
    assert labeller._get_handler(_request(app, "GET", "/api/v1/campaigns/9")) == (
        "/api/v1/campaigns/{campaign_id}",
        True,
    )


def test_no_route_has_an_all_digit_literal_segment(settings: Settings) -> None:
    """What lets ids share one remembered label: an all-digit segment only ever meets a parameter."""
    for route in routing._effective_routes(create_app(settings).routes):
        segments = getattr(route, "path", "").split("/")
        assert not any(segment.isdigit() for segment in segments), route


@pytest.fixture
def app_client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_asgi(settings)) as client:
        yield client


def _handlers(client: TestClient) -> dict[tuple[str, str, str], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.labels["handler"], s.labels["method"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "http_requests_total"
    }


def test_requests_are_counted_under_their_route_template(
    app_client: TestClient, settings: Settings, db: Session, user: User
) -> None:
    headers = factories.headers_for(settings, user)
    with factories.one_commit(db):
        campaigns = [factories.make_campaign(db, user) for _ in range(2)]
    before = _handlers(app_client)
    for campaign in campaigns * 2:
        assert app_client.get(f"/api/v1/campaigns/{campaign.id}", headers=headers).status_code == 200
    assert app_client.get("/api/v1/campaigns/999999", headers=headers).status_code == 404
    assert app_client.get("/api/v1/nothing/5", headers=headers).status_code == 404
    assert app_client.get("/api/v1/nothing/6", headers=headers).status_code == 404
    after = _handlers(app_client)
    moved = {key: value - before.get(key, 0) for key, value in after.items() if value != before.get(key, 0)}
    assert moved == {
        ("/api/v1/campaigns/{campaign_id}", "GET", "2xx"): 4,
        ("/api/v1/campaigns/{campaign_id}", "GET", "4xx"): 1,
    }
