from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.db import connect_read_only
from app.schemas.common import error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _database_ok(engine: Engine) -> bool:
    try:
        with connect_read_only(engine) as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


@router.get("/readyz", responses=error_responses(503))
async def readyz(request: Request) -> JSONResponse:
    """The database and, when configured, Redis answer; 503 otherwise."""
    checks = {"database": "ok" if await run_in_threadpool(_database_ok, request.app.state.engine) else "unavailable"}
    redis = request.app.state.tracking.redis
    if redis is not None:
        try:
            await redis.ping()
            checks["redis"] = "ok"
        except (RedisError, OSError):
            checks["redis"] = "unavailable"
    for dependency, state in checks.items():
        metrics.DEPENDENCY_UP.labels(dependency).set(1 if state == "ok" else 0)
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    return JSONResponse({"detail": checks, "code": "service_unavailable"}, status_code=503)
