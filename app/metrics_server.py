"""A separate Prometheus listener, and the bearer token every `/metrics` requires when set.

Used by `pixeltrack worker` (WORKER_METRICS_HOST:WORKER_METRICS_PORT) and by the API when
METRICS_BIND moves its metrics off the public port. prometheus_client's WSGI app renders the
registry; this module only adds the token check and a server that several processes may bind
at once (SO_REUSEPORT: every uvicorn worker starts one, any of them answers with the sum of all
processes in multiprocess mode, and the listener survives the death of any one worker).
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

PATH = "/metrics"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def bearer_matches(authorization: str | None, token: str | None) -> bool:
    """True when no token is configured, or `authorization` is `Bearer <token>` (constant time)."""
    if not token:
        return True
    scheme, _, value = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _json(
    start_response: StartResponse, status: str, detail: str, code: str, headers: list[tuple[str, str]]
) -> list[bytes]:
    body = json.dumps({"detail": detail, "code": code}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]


def protected_app(registry: CollectorRegistry, token: str | None) -> WSGIApp:
    """prometheus_client's WSGI app on /metrics only, behind the bearer token."""
    metrics_app: WSGIApp = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return _json(start_response, "404 Not Found", "Not Found", "not_found", [])
        if not bearer_matches(environ.get("HTTP_AUTHORIZATION"), token):
            headers = [("WWW-Authenticate", "Bearer")]
            return _json(start_response, "401 Unauthorized", "Not authenticated", "not_authenticated", headers)
        return metrics_app(environ, start_response)

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _SharedServer(_Server):
    allow_reuse_port = True  # several processes serve the same port (see the module docstring)


class _SilentHandler(WSGIRequestHandler):
    def log_message(self, *_args: Any) -> None:  # no access log (no client addresses in logs)
        pass


class MetricsServer:
    """A running listener; `close()` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start(
    host: str, port: int, registry: CollectorRegistry, token: str | None, *, shared: bool = False
) -> MetricsServer:
    """Serve `registry` at http://host:port/metrics in a daemon thread; `shared`: SO_REUSEPORT."""
    server_class: type[_Server] = _SharedServer if shared else _Server
    if ":" in host:

        class _Server6(server_class):  # type: ignore[valid-type, misc]
            address_family = socket.AF_INET6

        server_class = _Server6
    server = make_server(host, port, protected_app(registry, token), server_class, _SilentHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
