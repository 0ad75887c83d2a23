"""Liveness and readiness probes (GET and HEAD).

`/healthz`: the process answers. `/readyz`: 200 when the database answers and its schema
is the one this code expects (the Alembic revision is a head of app's migrations), with
Redis reported `ok` or `degraded` (the service works without it: pixels fall back to the
in-process queue, rate limits to per-process counters); 503 only when the database or the
schema is unusable, so an orchestrator never takes a working API out of rotation for Redis.
With a read replica (DATABASE_REPLICA_URL) `replica` is reported the same way (ok, lagging,
unavailable: reads then use the primary) with its lag in a `replica` block (app/replicas.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from alembic.script import ScriptDirectory
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.clients import ping
from app.db import connect_read_only
from app.migrations import alembic_config
from app.replicas import ReadRouter
from app.routing import PrefixRouter
from app.schemas.common import error_responses

router = PrefixRouter(tags=["health"])

RETRY_AFTER = "5"


async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@lru_cache(maxsize=1)
def expected_revisions() -> frozenset[str]:
    """The head revision(s) of the migrations shipped with this code."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def database_checks(engine: Engine) -> dict[str, str]:
    """`database`: ok | unavailable; `schema`: ok | missing | outdated | unknown."""
    try:
        with connect_read_only(engine) as conn:
            conn.execute(text("SELECT 1"))
            try:
                revisions = set(conn.scalars(text("SELECT version_num FROM alembic_version")))
            except SQLAlchemyError:
                return {"database": "ok", "schema": "missing"}
    except SQLAlchemyError:
        return {"database": "unavailable", "schema": "unknown"}
    if not revisions:
        return {"database": "ok", "schema": "missing"}
    return {"database": "ok", "schema": "ok" if revisions == expected_revisions() else "outdated"}


async def readyz(request: Request) -> JSONResponse:
    """200 when the database and schema are usable (Redis `ok` or `degraded`); 503 otherwise."""
    checks = await run_in_threadpool(database_checks, request.app.state.engine)
    metrics.DEPENDENCY_UP.labels("database").set(1 if checks["database"] == "ok" else 0)
    tracking = request.app.state.tracking
    if (client := tracking.redis) is not None:
        try:
            await tracking.breaker.call(lambda: ping(client))  # skipped at once while the breaker is open
            checks["redis"] = "ok"
        except Exception:  # noqa: BLE001 - breaker open, error, timeout, closed transport: degraded
            checks["redis"] = "degraded"
        metrics.DEPENDENCY_UP.labels("redis").set(1 if checks["redis"] == "ok" else 0)
    replica = await _replica(request, checks)
    if checks["database"] != "ok" or checks["schema"] != "ok":
        return JSONResponse(
            {"detail": checks, "code": "service_unavailable"}, status_code=503, headers={"Retry-After": RETRY_AFTER}
        )
    status = "ok" if all(state == "ok" for state in checks.values()) else "degraded"
    body: dict[str, Any] = {"status": status, "checks": checks}
    if replica is not None:
        body["replica"] = replica
    return JSONResponse(body)


async def _replica(request: Request, checks: dict[str, str]) -> dict[str, Any] | None:
    """With DATABASE_REPLICA_URL: `replica` ok | lagging (beyond REPLICA_MAX_LAG_SECONDS) |
    unavailable, measured now, and its lag. Never a 503: reads then use the primary."""
    reads: ReadRouter = request.app.state.reads
    if reads.monitor is None:
        return None
    monitor = reads.monitor
    await run_in_threadpool(monitor.check)
    checks["replica"] = "ok" if monitor.usable() else "lagging" if monitor.up else "unavailable"
    return reads.readiness()


for _method in ("GET", "HEAD"):
    _suffix = "" if _method == "GET" else "_head"
    router.add_api_route("/healthz", healthz, methods=[_method], name=f"healthz{_suffix}")
    router.add_api_route(
        "/readyz",
        readyz,
        methods=[_method],
        name=f"readyz{_suffix}",
        response_class=JSONResponse,
        responses=error_responses(503),
    )
