from __future__ import annotations

from typing import Annotated

from pydantic import EmailStr, Field, SecretStr, StrictBool

from app.schemas.common import Id, InModel, OutModel, PatchModel, UtcDatetime

Username = Annotated[str, Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$", examples=["marketing"])]
Password = Annotated[SecretStr, Field(min_length=8, max_length=128, examples=["correct horse battery"])]
Email = Annotated[EmailStr, Field(max_length=254, examples=["ana@example.com"])]


class UserCreate(InModel):
    username: Username
    email: Email
    password: Password
    is_admin: StrictBool = False


class UserUpdate(PatchModel):
    required_if_sent = frozenset({"username", "email", "password", "is_admin", "is_active"})

    username: Username | None = None
    email: Email | None = None
    password: Password | None = None
    is_admin: StrictBool | None = None
    is_active: StrictBool | None = None


class UserOut(OutModel):
    id: Id
    username: str
    email: str
    is_admin: bool
    is_active: bool
    created_at: UtcDatetime


class Token(OutModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")
