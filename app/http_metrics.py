"""The API's HTTP metrics: prometheus-fastapi-instrumentator's, recorded with less work per request.

The instrumentator defines the metrics (its default set: `http_requests_total`,
`http_request_size_bytes`, `http_response_size_bytes`, `http_request_duration_seconds`,
`http_request_duration_highr_seconds`) and installs its middleware; `HttpMetrics` is that
middleware with the per-request bookkeeping made cheap (measured, docs/benchmarks.md):

- the route template of a request (its `handler` label) is remembered. The library finds it by
  flattening every route of the app and matching the path against them in order, on every
  request. The answer depends only on the method, the root path and the path, and a path
  segment made of digits alone (an id) matches the same routes whatever the digits (no route
  has an all-digit literal segment; a test checks), so it is kept per (method, root path, path
  with such segments as one key). An answer that holds the request's own path (an unmatched
  path, or a trailing-slash redirect the library labels with the path) is shared only by
  requests of exactly that path. At most ROUTE_LABELS_CACHED answers are kept (emptied when
  full: random paths cannot grow it);
- after the response, the library builds a Request, a Response and an Info object and looks
  up five label sets; here the labelled series of each (method, status class, handler) are
  looked up once and remembered (bounded the same way), and the two Content-Length headers are
  read from the raw ASGI headers;
- the in-progress gauge (ours: the library's ignores the app's registry) is kept in this layer.

The same series with the same values as the library's own middleware: a test runs the same
requests through both and compares every sample.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from timeit import default_timer
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram, Summary
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ID_SEGMENT = re.compile(r"(?<=/)[0-9]+(?=/|$)")
_ID = "\x00"  # what an all-digit path segment becomes in a cache key (no request path holds it)
ROUTE_LABELS_CACHED = 2048
_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"})
# The library's options whose values this class reproduces (an empty list is an empty tuple).
_EXPECTED = {
    "should_group_status_codes": True,
    "should_group_untemplated": True,
    "should_round_latency_decimals": False,
    "should_exclude_streaming_duration": False,
    "should_only_respect_2xx_for_highr": False,
    "should_instrument_requests_inprogress": False,
    "body_handlers": (),
    "instrumentations": (),
    "async_instrumentations": (),
    "custom_labels": {},
    "metric_namespace": "",
    "metric_subsystem": "",
}
M = TypeVar("M", Counter, Summary, Histogram)
_Series = tuple[Any, Any, Any, Any]  # the labelled children of TOTAL, IN_SIZE, OUT_SIZE, LATENCY


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _metric(found: dict[str, Collector], name: str, kind: type[M]) -> M:
    metric = found.get(name)
    if not isinstance(metric, kind):
        raise RuntimeError(f"prometheus-fastapi-instrumentator no longer makes {name} as a {kind.__name__}")
    return metric


class HttpMetrics(PrometheusInstrumentatorMiddleware):
    def __init__(self, app: ASGIApp, *, in_progress: Gauge, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.in_progress = in_progress
        self._labels: dict[tuple[str, str, str], tuple[str, bool, bool]] = {}
        self._series: dict[tuple[str, str, str], _Series] = {}
        unexpected = {k: v for k, v in kwargs.items() if k in _EXPECTED and v != _EXPECTED[k] and (v or _EXPECTED[k])}
        if unexpected:
            raise RuntimeError(f"HttpMetrics reproduces the instrumentator's defaults only, not {unexpected}")
        found = self.registry._names_to_collectors  # the metrics its default instrumentation made
        self.total = _metric(found, "http_requests_total", Counter)
        self.in_size = _metric(found, "http_request_size_bytes", Summary)
        self.out_size = _metric(found, "http_response_size_bytes", Summary)
        self.latency_highr = _metric(found, "http_request_duration_highr_seconds", Histogram)
        self.latency = _metric(found, "http_request_duration_seconds", Histogram)

    def _route(self, scope: Scope) -> tuple[str, bool, bool]:
        """(handler, templated, excluded) of this request, remembered."""
        path: str = scope["path"]
        key = (scope["method"], scope.get("root_path", ""), _ID_SEGMENT.sub(_ID, path))
        found = self._labels.get(key)
        if found is None:
            handler, templated = super()._get_handler(Request(scope))
            found = handler, templated, self._is_handler_excluded(handler, templated)
            if key[2] != path and (not templated or path in handler):
                return found  # names this very path: not shared with other ids
            if len(self._labels) >= ROUTE_LABELS_CACHED:
                self._labels.clear()
            self._labels[key] = found
        return found

    def _get_handler(self, request: Request) -> tuple[str, bool]:
        handler, templated, _ = self._route(request.scope)
        return handler, templated

    def _children(self, method: str, status: str, handler: str) -> _Series:
        key = (method, status, handler)
        series = self._series.get(key)
        if series is None:
            series = (
                self.total.labels(method, status, handler),
                self.in_size.labels(handler),
                self.out_size.labels(handler),
                self.latency.labels(method, handler),
            )
            if len(self._series) >= ROUTE_LABELS_CACHED:
                self._series.clear()
            self._series[key] = series
        return series

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        gauge = self.in_progress.labels(method if method in _METHODS else "other")
        gauge.inc()
        try:
            start = default_timer()
            handler, templated, excluded = self._route(scope)
            if excluded:
                await self.app(scope, receive, send)
                return
            if not templated:  # (only when untemplated handlers are not ignored)
                handler = "none"
            await self._measured(scope, receive, send, start, handler)
        finally:
            gauge.dec()

    async def _measured(self, scope: Scope, receive: Receive, send: Send, start: float, handler: str) -> None:
        answer: list[Any] = [500, ()]  # status, headers: a 5xx when the app raised before answering

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer[:] = message["status"], message.get("headers", ())
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            duration = max(default_timer() - start, 0.0)
            status, headers = answer
            total, in_size, out_size, latency = self._children(scope["method"], f"{str(int(status))[0]}xx", handler)
            total.inc()
            in_size.observe(_content_length(scope["headers"]))
            out_size.observe(_content_length(headers))
            self.latency_highr.observe(duration)
            latency.observe(duration)
