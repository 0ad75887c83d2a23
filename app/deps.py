"""FastAPI dependencies: the database session, the current user, settings, paging.

Clients live on `app.state` (created in the lifespan, see app.main); these
`Annotated` aliases are how routes receive them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import HTTPBearer, OAuth2PasswordBearer
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.authn import Authenticator
from app.errors import Forbidden, RateLimited
from app.fastread import OwnedReads
from app.models import User
from app.models.base import MAX_ID
from app.ratelimit import RateLimiter
from app.replicas import ReadRouter, ReadTarget
from app.routing import after_commit, remember_session
from app.settings import Settings
from app.tracking.urls import TrackingUrls

MAX_PAGE_SIZE = 500
MAX_OFFSET = 2**31

# Two ways to send the one `Authorization: Bearer …` header, both published in the OpenAPI
# document (so /docs offers both): a JWT from /auth/token, or an API key `pt_…`. `Caller` reads
# the header itself; these two are the schemes app/openapi.py publishes for it.
CALLER_SCHEME = "Caller"
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/auth/token", auto_error=False, description="A JWT from POST /auth/token (username and password)."
)
api_key_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="APIKey",
    bearerFormat="pt_…",
    description="An API key `pt_…` (POST /api/v1/api-keys), sent as `Authorization: Bearer pt_…`.",
)

# Dependencies without I/O are `async def`: FastAPI runs a plain `def` dependency in the
# threadpool, a thread hop per request each (docs/benchmarks.md, authenticated CRUD).


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> AsyncIterator[Session]:
    """The request's session, one transaction: services flush, and the route
    (`app.routing.TransactionRoute`) commits it once the endpoint has returned, rolls it back on
    an error and re-runs the request on a deadlock. GET/HEAD requests only read: their sessions
    begin as readers (on SQLite: no write lock; app/db.read_only). Making a session costs no
    I/O (it connects on first use); closing one that still holds a connection runs in a worker
    thread, after the response is sent. On the primary always: a write request's user then reads
    from the primary for REPLICA_STICKY_SECONDS (app/replicas.py)."""
    state = request.app.state
    if request.method in ("GET", "HEAD"):
        factory = state.read_session_factory
    else:
        factory = state.session_factory
        if state.reads.enabled:
            after_commit(request, lambda: _wrote(request))
    session = _open(request, factory)
    try:
        yield session
    finally:
        await _close(session)


async def _wrote(request: Request) -> None:
    user_id = getattr(request.state, "user_id", None)
    if user_id is not None:
        await request.app.state.reads.wrote(user_id)


def _open(request: Request, factory: sessionmaker[Session]) -> Session:
    session: Session = factory()
    remember_session(request, session)
    return session


async def _close(session: Session) -> None:
    if session.in_transaction():
        await run_in_threadpool(session.close)
    else:
        session.close()


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def owned_reads(request: Request) -> OwnedReads:
    """Reads of one owned object without a Session, on the event loop (app/fastread.py). Taken
    from the request by the single-object GETs rather than as a dependency: those GETs are what
    SPEC §6 measures against /healthz, and FastAPI solves a dependency at ~15-20 µs per request."""
    reads: OwnedReads = request.app.state.owned_reads
    return reads


async def get_urls(request: Request) -> TrackingUrls:
    settings: Settings = request.app.state.settings
    return TrackingUrls(settings.public_base_url, request.app.state.tracker.codec)


UrlsDep = Annotated[TrackingUrls, Depends(get_urls)]
SessionDep = Annotated[Session, Depends(get_db)]


class Caller(SecurityBase):
    """The current user, as one dependency: `Authorization: Bearer <JWT or API key>` → the user
    (its token version must be the user's JWT's; an API key live and not expired), through
    app.authn's short cache; 401 without valid credentials, 403 for an inactive account, 429
    beyond RATE_LIMIT_PER_MINUTE requests per minute (an API key counts against its owner's limit,
    as the owner's JWT does).

    One dependency rather than the two security schemes it reads (`oauth2_scheme`,
    `api_key_scheme`) plus the user and its rate limit: FastAPI solves each dependency of each
    request at ~15-20 µs of CPU (measured, docs/benchmarks.md), ~60 µs for that chain of four, on
    every authenticated request. As a `SecurityBase`, FastAPI lists it as the routes' security in
    the OpenAPI document; app/openapi.py publishes it there as the two schemes it accepts."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel(description="A JWT or an API key (app/openapi.py publishes both schemes).")
        self.scheme_name = CALLER_SCHEME

    async def __call__(self, request: Request) -> User:
        scheme, credential = get_authorization_scheme_param(request.headers.get("authorization"))
        authenticator: Authenticator = request.app.state.auth
        user = await authenticator.authenticate(credential if scheme.lower() == "bearer" else None)
        request.state.user_id = user.id  # whose write this is (read-your-writes, app/replicas.py)
        settings: Settings = request.app.state.settings
        if settings.rate_limit_per_minute:
            limiter: RateLimiter = request.app.state.limiter
            wait = await limiter.hit(f"user:{user.id}", settings.rate_limit_per_minute, 60)
            if wait is not None:
                raise RateLimited("Too many requests; slow down.", headers={"Retry-After": str(max(1, round(wait)))})
        return user


get_current_user = Caller()
CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_read_target(request: Request, user: CurrentUser) -> ReadTarget:
    """Where this read request reads: the replica, or the primary when the user wrote in the last
    REPLICA_STICKY_SECONDS or the replica lags or is down (app/replicas.py)."""
    router: ReadRouter = request.app.state.reads
    target = await router.target(user.id)
    request.state.read_target = target.name  # a failure there re-runs the request (app/routing.py)
    return target


ReadTargetDep = Annotated[ReadTarget, Depends(get_read_target)]


async def get_read_db(request: Request, target: ReadTargetDep) -> AsyncIterator[Session]:
    """A read-only route's session (stats, lists, CSV exports, the event feed): from the replica
    when one is configured and fit to read from, else the primary's reader."""
    session = _open(request, target.factory)
    try:
        yield session
    finally:
        await _close(session)


ReadSessionDep = Annotated[Session, Depends(get_read_db)]


async def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("Administrator rights required.", code="admin_required")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


async def get_page(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size (at most 500).")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(get_page)]

# A path id: out-of-range values are a 422, never a database error.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
