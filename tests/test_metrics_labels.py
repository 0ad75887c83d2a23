"""The HTTP metrics (app/http_metrics.HttpMetrics): the `handler` label remembered per route, the
same labels as prometheus-fastapi-instrumentator's own per-request lookup gives, and the same
series with the same values as the library's own middleware records."""

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
from starlette.middleware import Middleware
from starlette.requests import Request

from app import http_metrics
from app import metrics as app_metrics
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


def _labeller(app: FastAPI) -> http_metrics.HttpMetrics:
    layer = app.build_middleware_stack()
    while not isinstance(layer, http_metrics.HttpMetrics):
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
    monkeypatch.setattr(http_metrics, "ROUTE_LABELS_CACHED", 10)
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


def _with_library_middleware(app: FastAPI) -> FastAPI:
    """`app` with prometheus-fastapi-instrumentator's own middleware where HttpMetrics was."""
    for index, entry in enumerate(app.user_middleware):
        if entry.cls is http_metrics.HttpMetrics:  # type: ignore[comparison-overlap]
            kwargs = {k: v for k, v in entry.kwargs.items() if k != "in_progress"}
            app.user_middleware[index] = Middleware(PrometheusInstrumentatorMiddleware, **kwargs)  # type: ignore[arg-type]
            return app
    raise AssertionError("no HttpMetrics in the app's middleware")


HTTP_FAMILIES = {
    "http_requests",
    "http_request_size_bytes",
    "http_response_size_bytes",
    "http_request_duration_seconds",
    "http_request_duration_highr_seconds",
}


def _recorded(app: FastAPI) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the instrumentator's metrics in the app's registry, but `_created`
    timestamps; the latency histograms by count only (their buckets depend on the timing)."""
    samples = {}
    for family in app.state.metrics_registry.collect():
        if family.name not in HTTP_FAMILIES:
            continue
        timed = family.type == "histogram"
        for sample in family.samples:
            if sample.name.endswith("_created") or (timed and not sample.name.endswith("_count")):
                continue
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _drive(app: FastAPI, headers: dict[str, str], campaign_id: int) -> None:
    with TestClient(app) as client:
        for method, path in REQUESTS:
            client.request(method, path, headers=headers)
        client.get(f"/api/v1/campaigns/{campaign_id}", headers=headers)
        client.get(f"/api/v1/campaigns/{campaign_id}")  # 401
        created = client.post("/api/v1/campaigns", json={"name": "sized"}, headers=headers)  # 201, a body
        assert created.status_code == 201
        client.post("/api/v1/campaigns", content=b"{not json", headers=headers)  # 422
        client.post("/api/v1/campaigns", json={"name": ""}, headers=headers)  # 422
        client.get(f"/api/v1/campaigns/{campaign_id}/sendsheet?format=ndjson", headers=headers)  # streamed
        client.head("/api/v1/campaigns", headers=headers)
        client.options("/api/v1/campaigns", headers=headers)
        deleted = client.delete(f"/api/v1/campaigns/{created.json()['id']}", headers=headers)
        assert deleted.status_code == 204  # the next run lists the same campaigns


def test_the_same_series_and_values_as_the_library(settings: Settings, db: Session, user: User, engine: Engine) -> None:
    headers = factories.headers_for(settings, user)
    with factories.one_commit(db):
        campaign = factories.make_campaign(db, user)
    ours, library = create_app(settings), _with_library_middleware(create_app(settings))
    _drive(ours, headers, campaign.id)
    _drive(library, headers, campaign.id)
    recorded = _recorded(ours)
    assert recorded == _recorded(library)
    counted = {dict(labels)["handler"] for name, labels in recorded if name == "http_requests_total"}
    assert {"/api/v1/campaigns/{campaign_id}", "/api/v1/campaigns", "/auth/me"} <= counted
    sizes = {
        dict(labels)["handler"]: value
        for (name, labels), value in recorded.items()
        if name == "http_request_size_bytes_sum"
    }
    assert sizes["/api/v1/campaigns"] > 0  # the POST bodies' Content-Length


def test_in_progress_counts_requests_being_answered(settings: Settings) -> None:
    app = create_app(settings)
    seen = []

    @app.get("/probe-in-progress", include_in_schema=False)
    def probe() -> dict[str, float]:
        value = app_metrics.IN_PROGRESS.labels("GET")._value.get()
        seen.append(value)
        return {"value": value}

    before = app_metrics.IN_PROGRESS.labels("GET")._value.get()
    with TestClient(app) as client:
        assert client.get("/probe-in-progress").status_code == 200
    assert seen == [before + 1]
    assert app_metrics.IN_PROGRESS.labels("GET")._value.get() == before
