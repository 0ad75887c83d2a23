"""Business metrics (prometheus_client) for the API and the worker, and the /metrics wiring.

Several uvicorn workers: set PROMETHEUS_MULTIPROC_DIR (a directory wiped at start,
`pixeltrack serve` does it) before the process imports this module; every process then
writes its values there and /metrics aggregates them. The worker process serves its own
registry on WORKER_METRICS_PORT.

Label cardinality is bounded: kind, client class, result, dependency, HTTP method, route
template and status class. No tenant identifier (campaign, group, contact, webhook, user), nor
a pixel, link or IP, is ever a label: per-campaign and per-group figures are read from the
database (the Grafana panels use the MySQL datasource).

`/metrics` requires `Authorization: Bearer METRICS_TOKEN` when that is set; with METRICS_BIND
the API serves it on that separate listener only (app/metrics_server.py), not on its public port.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from starlette.middleware import Middleware

from app import metrics_server
from app.errors import Unauthorized
from app.http_metrics import HttpMetrics
from app.schemas.common import error_responses

if TYPE_CHECKING:
    from app.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

if _multiproc_dir := os.environ.get(MULTIPROC_ENV):
    # prometheus_client opens a file there as each metric below is created: a directory
    # that does not exist yet (first start, fresh volume) would crash the import.
    Path(_multiproc_dir).mkdir(parents=True, exist_ok=True)

LOADS = Counter(
    "pixeltrack_tracking_requests_total",
    "Pixel loads (kind=open), clicks (kind=click) and conversions (kind=conversion, POST /e and GET /e.gif, "
    "first_pass=none) answered, by the request path's first-pass split (first_pass=machine|human; the final "
    "class is on pixeltrack_events_inserted_total) and result (recorded, deduplicated, invalid_token; "
    "conversions also refused: origin, fields or rate limit).",
    ["kind", "first_pass", "result"],
)
INSERTED = Counter(
    "pixeltrack_events_inserted_total",
    "Openings (kind=open), clicks (kind=click) and conversions (kind=conversion, client empty) written to the database.",
    ["kind", "client"],
)
SKIPPED = Counter(
    "pixeltrack_events_skipped_total",
    "Events not written: reason=missing (pixel/link/contact deleted), duplicate (event already stored) or "
    "consent (the contact's tracking is off).",
    ["kind", "reason"],
)
BATCH_SIZE = Histogram(
    "pixeltrack_ingest_batch_size",
    "Events per database batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
INSERT_SECONDS = Histogram(
    "pixeltrack_ingest_insert_seconds",
    "Time to write one batch (lookup + insert + commit).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
DEPENDENCY_ERRORS = Counter(
    "pixeltrack_dependency_errors_total", "Errors talking to a dependency.", ["dependency", "component"]
)
DEGRADED = Gauge(
    "pixeltrack_degraded",
    "1 while Redis is unreachable and events go straight to the database (dedupe per process).",
    multiprocess_mode="max",
)
MEMORY_QUEUE = Gauge(
    "pixeltrack_memory_queue_pending", "Events waiting in the in-process queue.", multiprocess_mode="livesum"
)
DEPENDENCY_UP = Gauge(
    "pixeltrack_dependency_up",
    "1 when the dependency answered the last check (worker: every second; API: on /readyz).",
    ["dependency"],
    multiprocess_mode="livemin",
)
DB_READS = Counter(
    "pixeltrack_db_reads_total",
    "Read requests (stats, lists, CSV exports, the event feed) by the database they read from "
    "(target=primary|replica; only with DATABASE_REPLICA_URL, docs/scaling.md#read-replicas).",
    ["target"],
)
REPLICA_LAG = Gauge(
    "pixeltrack_replica_lag_seconds",
    "How far the read replica is behind the primary at the last check (-1: unknown or unreachable).",
    multiprocess_mode="max",
)
IN_PROGRESS = Gauge(
    "pixeltrack_http_requests_inprogress", "API requests being handled.", ["method"], multiprocess_mode="livesum"
)
STREAM_LENGTH = Gauge("pixeltrack_stream_length", "Entries in the Redis stream (worker view).")
STREAM_PENDING = Gauge("pixeltrack_stream_pending", "Entries delivered to consumers but not yet acknowledged.")
STREAM_LAG = Gauge("pixeltrack_stream_lag", "Entries not yet delivered to the consumer group.")
REDIS_WAIT_SHORT = Counter(
    "pixeltrack_redis_wait_short_total",
    "Enqueue calls whose WAIT saw fewer replicas than REDIS_WAIT_REPLICAS (their events also went to the fallback).",
)
REDIS_BREAKER_OPEN = Gauge(
    "pixeltrack_redis_breaker_open",
    "1 while the API skips Redis after a failed or slow call (app/breaker.py).",
    multiprocess_mode="max",
)
RATE_LIMIT_UNSHARED = Counter(
    "pixeltrack_rate_limit_unshared_total",
    "Rate-limit and login-throttle checks made without Redis (reason=breaker_open or redis_error): "
    "counted per process only, so the shared limit fails open.",
    ["reason"],
)
WEBHOOK_ATTEMPTS = Counter(
    "pixeltrack_delivery_attempts_total",
    "Webhook delivery attempts by outcome (delivered, retry, failed: retries exhausted, gone: 410 or deleted); "
    "per-webhook detail is in GET /api/v1/webhooks/{id}/deliveries, never a label.",
    ["outcome"],
)
WEBHOOK_EVENTS = Counter("pixeltrack_events_delivered_total", "Events delivered to webhooks (2xx answers).")
WEBHOOK_LAG = Histogram(
    "pixeltrack_delivery_lag_seconds",
    "From an event's storing to its delivery (2xx answer).",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400),
)
for _outcome in ("delivered", "retry", "failed", "gone"):
    WEBHOOK_ATTEMPTS.labels(_outcome)  # every series exported from the start (dashboards, rates)

# Pre-bound children for the hot path (labels() costs a lookup and a lock per call).
_LOAD_CHILDREN = {
    (kind, machine, result): LOADS.labels(kind, "machine" if machine else "human", result)
    for kind in ("open", "click")
    for machine in (False, True)
    for result in ("recorded", "deduplicated")
}
_INVALID = {kind: LOADS.labels(kind, "none", "invalid_token") for kind in ("open", "click", "conversion")}
_CONVERSIONS = {
    result: LOADS.labels("conversion", "none", result) for result in ("recorded", "deduplicated", "refused")
}
_KINDS = {"o": "open", "c": "click", "v": "conversion"}


def tracking_request(kind: str, machine: bool, recorded: bool) -> None:
    """One pixel load or click answered (kind is the event kind, "o" or "c")."""
    _LOAD_CHILDREN[_KINDS[kind], machine, "recorded" if recorded else "deduplicated"].inc()


def invalid_token(kind: str) -> None:
    _INVALID[_KINDS[kind]].inc()


def conversion_request(result: str) -> None:
    """One conversion answered: recorded, deduplicated or refused (invalid tokens: `invalid_token`)."""
    _CONVERSIONS[result].inc()


def set_degraded(degraded: bool) -> None:
    DEGRADED.set(1 if degraded else 0)
    if degraded:
        DEPENDENCY_ERRORS.labels("redis", "api").inc()


def prepare_multiprocess_dir(path: str) -> None:
    """Empty (or create) the multiprocess directory: stale files of dead processes would be summed."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():  # the contents, not the directory: it may be a mount point
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def multiprocess_registry() -> CollectorRegistry | None:
    if not os.environ.get(MULTIPROC_ENV):
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


class _Both(Collector):
    """The process-wide registry and this app's HTTP metrics, as one collector."""

    def __init__(self, *registries: CollectorRegistry) -> None:
        self._registries = registries

    def collect(self) -> Iterable[Metric]:
        for registry in self._registries:
            yield from registry.collect()


def _exposed(app_registry: CollectorRegistry) -> CollectorRegistry:
    """What /metrics renders: every process's files in multiprocess mode, else this process."""
    combined = multiprocess_registry()
    if combined is None:
        combined = CollectorRegistry(auto_describe=False)
        combined.register(_Both(REGISTRY, app_registry))
    return combined


def start_listener(app: FastAPI) -> metrics_server.MetricsServer | None:
    """With METRICS_BIND: serve this app's /metrics there (called at start-up, closed at shutdown)."""
    settings: Settings = app.state.settings
    address = settings.metrics_address
    if address is None:
        return None
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    shared = bool(os.environ.get(MULTIPROC_ENV))  # every uvicorn worker binds it; each answers the sum
    return metrics_server.start(*address, _exposed(app.state.metrics_registry), token, shared=shared)


def instrument(app: FastAPI, settings: Settings) -> None:
    """HTTP metrics for the API routes (rate, latency histogram, status classes, in progress) + /metrics.

    The instrumentator's metrics live in a registry of this app (several apps may exist in
    one process, e.g. in tests); /metrics serves it with the business metrics above. The
    pixel/click fast path wraps the app, so its requests are counted by the business
    counters rather than per request here. With METRICS_BIND the public app has no /metrics
    (404): `start_listener` serves it on that address. The instrumentator's middleware is
    replaced by app.http_metrics.HttpMetrics, its subclass (the same series, less work).
    """
    registry = CollectorRegistry()
    app.state.metrics_registry = registry
    Instrumentator(
        should_group_status_codes=True,
        should_ignore_untemplated=True,
        # Its in-progress gauge ignores `registry` (one per process only): ours is below.
        should_instrument_requests_inprogress=False,
        excluded_handlers=["/metrics", "/healthz", "/readyz"],
        registry=registry,
    ).instrument(app)
    added = app.user_middleware[0]  # add_middleware inserts first: the instrumentator's
    if added.cls is not PrometheusInstrumentatorMiddleware:  # type: ignore[comparison-overlap]
        raise RuntimeError("prometheus-fastapi-instrumentator no longer adds its middleware as expected")
    # (the library types its middleware loosely: not an ASGIApp to mypy)
    app.user_middleware[0] = Middleware(HttpMetrics, in_progress=IN_PROGRESS, **added.kwargs)  # type: ignore[arg-type]

    if settings.metrics_bind:
        return
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    def authorized(request: Request) -> None:
        # Read from the request (not a Header parameter): the route then has no input to validate.
        if not metrics_server.bearer_matches(request.headers.get("authorization"), token):
            raise Unauthorized("Not authenticated: /metrics requires the METRICS_TOKEN bearer token")

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        include_in_schema=True,
        dependencies=[Depends(authorized)],
        responses={
            401: {
                **error_responses(401)[401],
                "description": "METRICS_TOKEN is set and the request lacks it as a bearer token",
            }
        },
    )
    def prometheus_metrics() -> Response:
        """Prometheus text format: HTTP metrics and business metrics (all workers aggregated).

        Requires `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set."""
        return Response(generate_latest(_exposed(registry)), media_type=CONTENT_TYPE_LATEST)


def mark_process_dead(pid: int) -> None:
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
