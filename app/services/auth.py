"""Logging in: credential check, failed-login throttling, token issue."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.errors import Forbidden, RateLimited, Unauthorized
from app.models import User
from app.ratelimit import RateLimiter
from app.security import create_access_token
from app.services import users
from app.settings import Settings


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds)))}


async def login(db: Session, limiter: RateLimiter, settings: Settings, username: str, password: str, ip: str) -> User:
    """The user, or 401; after LOGIN_MAX_FAILURES failures for this username from this IP
    within the window, 429 until the window ends (a success clears the count)."""
    key = f"login:{username[:64]}:{ip}"
    limit, window = settings.login_max_failures, settings.login_failure_window_seconds
    wait = await limiter.peek(key, limit, window)
    if wait is not None:
        raise RateLimited("Too many failed logins; try again later.", headers=_retry_after(wait))
    try:
        user = await run_in_threadpool(users.authenticate, db, username, password)
    except Unauthorized:
        await limiter.hit(key, limit, window)
        raise
    await limiter.reset(key, window)
    if not user.is_active:
        raise Forbidden("This account is inactive.", code="inactive_user")
    return user


def issue_token(settings: Settings, user: User) -> tuple[str, int]:
    """A bearer JWT for the user and its lifetime in seconds."""
    minutes = settings.api_access_token_expire_minutes
    token = create_access_token(
        user.id,
        user.token_version,
        secret=settings.secret_key(),
        algorithm=settings.api_secret_algorithm,
        expires_minutes=minutes,
    )
    return token, minutes * 60
