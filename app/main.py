"""The FastAPI application: `create_app()` wires settings, clients, errors and routers."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import IntegrityError

from app import __version__, cooperative, gctune, metrics
from app.accesslog import configure_access_log
from app.authn import Authenticator
from app.bodyguard import RequestBodyGuard
from app.db import READ_ONLY, make_engine, make_sessionmaker, session_scope
from app.errors import install_error_handlers
from app.fastread import make_owned_reads
from app.middleware import install_http_middleware
from app.openapi import build_openapi
from app.replicas import ReadRouter, ReplicaMonitor, StickyUsers, read_only_engine
from app.routers import (
    apikeys,
    auth,
    campaigns,
    contacts,
    conversions,
    events,
    groups,
    health,
    links,
    openings,
    pixels,
    reports,
    sending,
    tracking,
    users,
    webhooks,
)
from app.services.users import ensure_first_admin
from app.settings import Settings, get_settings
from app.tracking.asgi import TrackingFastPath
from app.tracking.runtime import start_tracking

DESCRIPTION = """
Self-hosted email open tracking. Authenticate with **POST /auth/token** (or the
*Authorize* button), then manage campaigns → groups → contacts → pixels → openings.
Unattended tools use an API key instead (**POST /api/v1/api-keys**, sent as
`Authorization: Bearer pt_…`; *Authorize* → *APIKey*).

Every error answers `{"detail": ..., "code": "..."}`.
"""


def _create_first_admin(app: FastAPI, settings: Settings) -> None:
    if not (settings.first_admin_username and settings.first_admin_password):
        return
    try:
        with session_scope(app.state.session_factory) as db:
            ensure_first_admin(
                db,
                username=settings.first_admin_username,
                password=settings.first_admin_password.get_secret_value(),
                email=settings.first_admin_email,
            )
    except IntegrityError:
        pass  # another worker created it at the same moment


def make_read_router(state: Any, settings: Settings) -> ReadRouter:
    """Where read requests read (app/replicas.py): the replica of DATABASE_REPLICA_URL, else the
    primary's reader sessions (no replica: no lookup per request)."""
    if settings.database_replica_url is None:
        return ReadRouter(state.read_session_factory)
    replica = read_only_engine(
        make_engine(settings.database_replica_url.get_secret_value(), lean_pool=True, **settings.database_timeouts)
    )
    return ReadRouter(
        state.read_session_factory,
        make_sessionmaker(replica.execution_options(**{READ_ONLY: True})),
        ReplicaMonitor(state.engine, replica, max_lag=settings.replica_max_lag_seconds),
        StickyUsers(settings.replica_sticky_seconds, state.tracking.redis, state.tracking.breaker),
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app.state.engine = make_engine(settings.sqlalchemy_url, lean_pool=True, **settings.database_timeouts)
    app.state.session_factory = make_sessionmaker(app.state.engine)
    # GET/HEAD requests' sessions: readers (app/db.read_only), without a call per request.
    app.state.read_session_factory = make_sessionmaker(app.state.engine.execution_options(**{READ_ONLY: True}))
    # GETs of one owned object: no Session, no thread hop (app/fastread.py).
    app.state.owned_reads = make_owned_reads(
        settings.sqlalchemy_url,
        app.state.engine,
        pool_size=30,  # as the engine's (app/db.make_engine)
        connect_timeout=settings.database_connect_timeout_seconds,
        read_timeout=settings.database_read_timeout_seconds,
    )
    _create_first_admin(app, settings)
    app.state.tracking = await start_tracking(settings, app.state.engine)
    app.state.reads = make_read_router(app.state, settings)
    await app.state.reads.start()
    app.state.tracker = app.state.tracking.tracker
    app.state.limiter = app.state.tracking.limiter
    app.state.intake = app.state.tracking.intake
    app.state.auth = Authenticator(
        app.state.engine,
        secret=settings.secret_key(),
        algorithm=settings.api_secret_algorithm,
        redis=app.state.tracking.redis,
    )
    await app.state.auth.start()
    metrics_listener = metrics.start_listener(app)  # METRICS_BIND: /metrics off the public port
    try:
        yield
    finally:
        if metrics_listener is not None:
            metrics_listener.close()
        await app.state.auth.close()
        await app.state.reads.close()
        await app.state.tracking.close()  # flushes events still in process memory
        await app.state.owned_reads.close()
        app.state.engine.dispose()
        metrics.mark_process_dead(os.getpid())


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_access_log(settings.access_log)
    # /docs and /redoc load Swagger UI and ReDoc from files shipped in fastapi-offline, not a CDN.
    # No validator badge either: Swagger UI would load it from validator.swagger.io.
    app = FastAPIOffline(
        title="PixelTracking",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    install_error_handlers(app)
    for module in (
        health,
        tracking,
        auth,
        users,
        campaigns,
        groups,
        contacts,
        pixels,
        openings,
        links,
        reports,
        sending,
        webhooks,
        events,
        apikeys,
        conversions,
    ):
        app.include_router(module.router)
    # Inside metrics, CORS and the security headers, before anything reads a body.
    app.add_middleware(RequestBodyGuard, settings=settings)
    metrics.instrument(app, settings)
    install_http_middleware(app, settings)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


def create_asgi(settings: Settings | None = None) -> TrackingFastPath:
    """What uvicorn serves: the FastAPI app behind the pixel/click fast path."""
    app = create_app(settings)
    gctune.tune()  # fewer, cheaper collections for a server process (app/gctune.py)
    cooperative.configure_process()
    return TrackingFastPath(app, app.state)
