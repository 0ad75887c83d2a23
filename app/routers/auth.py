from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from app.deps import CurrentUser, SessionDep, SettingsDep
from app.errors import Forbidden
from app.schemas.common import error_responses
from app.schemas.user import Token, UserOut
from app.security import create_access_token
from app.services import users

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=Token, responses=error_responses(401, 403, 422, 429))
def login(form: Annotated[OAuth2PasswordRequestForm, Depends()], db: SessionDep, settings: SettingsDep) -> Token:
    """Exchange a username and password (OAuth2 password form) for a bearer JWT."""
    user = users.authenticate(db, form.username, form.password)
    if not user.is_active:
        raise Forbidden("This account is inactive.", code="inactive_user")
    minutes = settings.api_access_token_expire_minutes
    token = create_access_token(
        user.id,
        user.token_version,
        secret=settings.secret_key(),
        algorithm=settings.api_secret_algorithm,
        expires_minutes=minutes,
    )
    return Token(access_token=token, expires_in=minutes * 60)


@router.get("/me", response_model=UserOut, responses=error_responses(401, 403))
def me(user: CurrentUser) -> UserOut:
    """The authenticated user."""
    return UserOut.model_validate(user)
