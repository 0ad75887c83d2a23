"""Users: creation, authentication, admin management, the first admin.

Usernames are always handled in their normal form (app.credentials.normalize_username).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.credentials import USERNAME_MAX_LENGTH, normalize_username, password_problem
from app.errors import Conflict, NotFound, Unauthorized
from app.models import User
from app.schemas.user import UserCreate, UserUpdate
from app.security import hash_password, verify_password
from app.services.common import apply_changes, conflict, paginate

log = logging.getLogger("pixeltrack.users")


def get_by_username(db: Session, username: str) -> User | None:
    name = normalize_username(username)
    if not name or len(name) > USERNAME_MAX_LENGTH:
        return None
    return db.scalar(select(User).where(User.username == name))


def authenticate(db: Session, username: str, password: str) -> User:
    """The active user with this username and password; anything else is the same 401
    (a deactivated account with the right password must not confirm the password)."""
    user = get_by_username(db, username)
    password_ok = verify_password(password, user.hashed_password if user else None)
    if user is None or not password_ok or not user.is_active:
        raise Unauthorized("Incorrect username or password.", code="invalid_credentials")
    return user


def create_user(db: Session, *, username: str, email: str, password: str, is_admin: bool = False) -> User:
    username = normalize_username(username)
    if get_by_username(db, username) is not None:
        raise conflict(["body", "username"], "A user with this username already exists.")
    user = User(username=username, email=email, hashed_password=hash_password(password), is_admin=is_admin)
    db.add(user)
    db.flush()
    return user


def list_users(db: Session, *, limit: int, offset: int) -> tuple[Sequence[User], int]:
    return paginate(db, select(User).order_by(User.id), limit=limit, offset=offset)


def get_user(db: Session, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("User not found.")
    return user


def update_user(db: Session, actor: User, user: User, patch: UserUpdate) -> User:
    changes: dict[str, Any] = patch.changes()
    if patch.password is not None:
        changes["password"] = patch.password.get_secret_value()
    if patch.email is not None:
        changes["email"] = str(patch.email)
    if user.id == actor.id and (changes.get("is_admin") is False or changes.get("is_active") is False):
        raise Conflict("You cannot remove your own admin rights or deactivate yourself.", code="self_lockout")
    username = changes.get("username")
    if username is not None:
        username = changes["username"] = normalize_username(username)
    if username is not None and username != user.username and get_by_username(db, username) is not None:
        raise conflict(["body", "username"], "A user with this username already exists.")
    password = changes.pop("password", None)
    if password is not None:
        user.hashed_password = hash_password(password)
        user.token_version += 1  # old tokens stop working
    if changes.get("is_active") is False and user.is_active:
        user.token_version += 1
    apply_changes(user, changes)
    db.flush()
    return user


def delete_user(db: Session, actor: User, user: User) -> None:
    if user.id == actor.id:
        raise Conflict("You cannot delete your own account.", code="self_lockout")
    db.delete(user)
    db.flush()


def default_email(username: str) -> str:
    """The email of an admin created without one (CLI, FIRST_ADMIN_* without FIRST_ADMIN_EMAIL)."""
    name = normalize_username(username)
    return name if "@" in name else f"{name}@localhost.localdomain"


def validated_admin(username: str, email: str | None, password: str) -> UserCreate:
    """An admin to create, checked by the API's own schema (raises pydantic.ValidationError)."""
    return UserCreate.model_validate(
        {"username": username, "email": email or default_email(username), "password": password, "is_admin": True}
    )


def create_from(db: Session, data: UserCreate) -> User:
    return create_user(
        db,
        username=data.username,
        email=str(data.email),
        password=data.password.get_secret_value(),
        is_admin=data.is_admin,
    )


def admin_exists(db: Session) -> bool:
    return db.scalar(select(User.id).where(User.is_admin).limit(1)) is not None


def ensure_first_admin(
    db: Session, *, username: str | None, password: str | None, email: str | None = None
) -> tuple[User | None, str | None]:
    """Create the first admin, only when no admin exists at all (so a deleted bootstrap
    admin stays deleted, and FIRST_ADMIN_* never re-creates or overrides anyone).

    With FIRST_ADMIN_USERNAME/PASSWORD set, that user is created as admin; a name taken by a
    non-admin user is left alone (logged). With nothing set and no user at all, an `admin`
    user with a generated password is created; the password is returned so the caller can
    print it once. Returns (created user or None, generated password or None).
    """
    if admin_exists(db):
        return None, None
    if username and password:
        if get_by_username(db, username) is not None:
            log.warning("FIRST_ADMIN_USERNAME names an existing non-admin user: no first admin created")
            return None, None
        if password_problem(password) is not None:
            # Production refuses to start with such a password (app.settings); elsewhere it is used.
            log.warning("FIRST_ADMIN_PASSWORD does not meet the password policy: change that admin's password")
        return create_user(
            db, username=username, email=email or default_email(username), password=password, is_admin=True
        ), None
    if db.scalar(select(User.id).limit(1)) is not None:
        return None, None
    generated = secrets.token_urlsafe(12)
    name = username or "admin"
    return create_user(
        db, username=name, email=email or default_email(name), password=generated, is_admin=True
    ), generated
