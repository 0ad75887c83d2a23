"""Logging in: credential check, failed-login throttling, token issue."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.credentials import USERNAME_MAX_LENGTH, normalize_username
from app.errors import RateLimited, Unauthorized
from app.models import User
from app.ratelimit import RateLimiter
from app.security import create_access_token
from app.services import users
from app.settings import Settings


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds)))}


async def login(db: Session, limiter: RateLimiter, settings: Settings, username: str, password: str, ip: str) -> User:
    """The user, or 401; at most LOGIN_MAX_FAILURES password checks for one (username, IP)
    within the window, then 429 until it ends (a success clears the count).

    Each attempt takes a slot atomically *before* the password is checked, so parallel
    attempts can never check more passwords than the limit. The key uses the normalised
    username: `Gina`, `gina ` and full-width `gina` share one count.
    """
    name = normalize_username(username[:256])
    key = f"login:{name[:USERNAME_MAX_LENGTH]}:{ip}"
    limit, window = settings.login_max_failures, settings.login_failure_window_seconds
    wait = await limiter.reserve(key, limit, window)
    if wait is not None:
        raise RateLimited("Too many failed logins; try again later.", headers=_retry_after(wait))
    try:
        user = await run_in_threadpool(users.authenticate, db, name, password)
    except Unauthorized:
        raise  # a failure: the slot stays taken
    except Exception:
        await limiter.release(key)  # not a failed password (e.g. the database is down)
        raise
    await limiter.reset(key)
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
