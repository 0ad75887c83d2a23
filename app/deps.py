"""FastAPI dependencies: the database session, the current user, settings, paging.

Clients live on `app.state` (created in the lifespan, see app.main); these
`Annotated` aliases are how routes receive them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from app.db import read_only
from app.errors import Forbidden, RateLimited, Unauthorized
from app.models import User
from app.models.base import MAX_ID
from app.ratelimit import RateLimiter
from app.routing import remember_session
from app.security import InvalidToken, decode_access_token
from app.settings import Settings
from app.tracking.urls import TrackingUrls

MAX_PAGE_SIZE = 500
MAX_OFFSET = 2**31

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Session]:
    """The request's session, one transaction: services flush, and the route
    (`app.routing.TransactionRoute`) commits it once the endpoint has returned, rolls it back on
    an error and re-runs the request on a deadlock. GET/HEAD requests only read: on SQLite they
    take no write lock (app/db.read_only). Closed after the response is sent."""
    session: Session = request.app.state.session_factory()
    remember_session(request, session)
    if request.method in ("GET", "HEAD"):
        read_only(session)
    try:
        yield session
    finally:
        session.close()


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_urls(request: Request) -> TrackingUrls:
    settings: Settings = request.app.state.settings
    return TrackingUrls(settings.public_base_url, request.app.state.tracker.codec)


UrlsDep = Annotated[TrackingUrls, Depends(get_urls)]
SessionDep = Annotated[Session, Depends(get_db)]


def get_current_user(
    db: SessionDep, settings: SettingsDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    if not token:
        raise Unauthorized("Not authenticated.")
    try:
        claims = decode_access_token(token, secret=settings.secret_key(), algorithm=settings.api_secret_algorithm)
    except InvalidToken:
        raise Unauthorized("Invalid or expired token.", code="invalid_token") from None
    user = db.get(User, claims.user_id)
    if user is None or user.token_version != claims.token_version:
        raise Unauthorized("Invalid or expired token.", code="invalid_token")
    if not user.is_active:
        raise Forbidden("This account is inactive.", code="inactive_user")
    return user


async def get_rate_limited_user(
    request: Request, user: Annotated[User, Depends(get_current_user)], settings: SettingsDep
) -> User:
    """The current user, within RATE_LIMIT_PER_MINUTE requests per minute (429 beyond)."""
    if settings.rate_limit_per_minute:
        limiter: RateLimiter = request.app.state.limiter
        wait = await limiter.hit(f"user:{user.id}", settings.rate_limit_per_minute, 60)
        if wait is not None:
            raise RateLimited("Too many requests; slow down.", headers={"Retry-After": str(max(1, round(wait)))})
    return user


CurrentUser = Annotated[User, Depends(get_rate_limited_user)]


def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("Administrator rights required.", code="admin_required")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def get_page(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size (at most 500).")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(get_page)]

# A path id: out-of-range values are a 422, never a database error.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
