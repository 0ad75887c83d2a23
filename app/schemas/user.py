from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    StrictBool,
    ValidationError,
)

from app.credentials import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, normalize_username, password_problem
from app.schemas.common import Id, InModel, OutModel, PatchModel, UtcDatetime


def _stripped(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _acceptable_password(value: SecretStr) -> SecretStr:
    problem = password_problem(value.get_secret_value())
    if problem is not None:
        raise ValueError(problem)
    return value


# Stripped, checked, then stored in the one normal form (app/credentials.py): lower case, so
# usernames are unique case-insensitively.
Username = Annotated[
    str,
    Field(
        min_length=3,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.@-]+$",
        examples=["marketing"],
        description="Letters, digits, `_ . @ -`; stored in lower case (unique case-insensitively).",
    ),
    BeforeValidator(_stripped),
    AfterValidator(normalize_username),
]
Password = Annotated[
    SecretStr,
    Field(
        examples=["correct horse battery"],
        description=f"At least {MIN_PASSWORD_LENGTH} characters, not a common password.",
        # Checked by _acceptable_password (human messages); published for clients.
        json_schema_extra={"minLength": MIN_PASSWORD_LENGTH, "maxLength": MAX_PASSWORD_LENGTH},
    ),
    AfterValidator(_acceptable_password),
]
Email = Annotated[EmailStr, Field(max_length=254, examples=["ana@example.com"]), BeforeValidator(_stripped)]
# Passwords are taken exactly as typed: the user models do not strip strings (InModel does), so a
# password with spaces around it is the one the login form (never stripped) checks; the other
# fields strip themselves (`_stripped`).
_AS_TYPED = ConfigDict(extra="forbid", str_strip_whitespace=False)


class UserCreate(InModel):
    model_config = _AS_TYPED

    username: Username
    email: Email
    password: Password
    is_admin: StrictBool = False


class UserUpdate(PatchModel):
    model_config = _AS_TYPED
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


def human_errors(exc: ValidationError, names: Mapping[str, str]) -> list[str]:
    """One line per problem, naming the field as the caller knows it (e.g. `--email`)."""
    lines = []
    for err in exc.errors(include_input=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "string_pattern_mismatch" and field == "username":
            message = "use only letters, digits and _ . @ - (no spaces)"
        lines.append(f"{names.get(field, field)}: {message}")
    return lines
