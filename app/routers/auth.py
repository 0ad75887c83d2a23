from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from app.deps import CurrentUser, SessionDep, SettingsDep
from app.routing import PrefixRouter, TransactionRoute
from app.schemas.common import error_responses
from app.schemas.user import Token, UserOut
from app.services import auth

router = PrefixRouter(prefix="/auth", tags=["auth"], route_class=TransactionRoute)


@router.post("/token", response_model=Token, responses=error_responses(401, 422, 429))
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, db: SessionDep, settings: SettingsDep
) -> Token:
    """Exchange a username and password (OAuth2 password form) for a bearer JWT.

    The username is matched case-insensitively (stored in lower case). A wrong password, an
    unknown user and a deactivated account all answer the same 401. After LOGIN_MAX_FAILURES
    failures for one username from one IP, 429 (with Retry-After) until
    LOGIN_FAILURE_WINDOW_SECONDS have passed.
    """
    ip = request.client.host if request.client else ""
    user = await auth.login(db, request.app.state.limiter, settings, form.username, form.password, ip)
    token, expires_in = auth.issue_token(settings, user)
    return Token(access_token=token, expires_in=expires_in)


@router.get("/me", response_model=UserOut, responses=error_responses(401, 403, 429))
async def me(user: CurrentUser) -> UserOut:
    """The authenticated user."""
    return UserOut.model_validate(user)
