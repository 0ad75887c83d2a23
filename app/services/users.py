"""Users: creation, authentication, admin management, the first admin."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, Unauthorized
from app.models import User
from app.security import hash_password, verify_password
from app.services.common import apply_changes, conflict, paginate


def get_by_username(db: Session, username: str) -> User | None:
    return db.scalar(select(User).where(User.username == username))


def authenticate(db: Session, username: str, password: str) -> User:
    user = get_by_username(db, username) if len(username) <= 64 else None
    password_ok = verify_password(password, user.hashed_password if user else None)
    if user is None or not password_ok:
        raise Unauthorized("Incorrect username or password.", code="invalid_credentials")
    return user


def create_user(db: Session, *, username: str, email: str, password: str, is_admin: bool = False) -> User:
    if get_by_username(db, username) is not None:
        raise conflict(["body", "username"], "A user with this username already exists.")
    user = User(username=username, email=email, hashed_password=hash_password(password), is_admin=is_admin)
    db.add(user)
    db.commit()
    return user


def list_users(db: Session, *, limit: int, offset: int) -> tuple[Sequence[User], int]:
    return paginate(db, select(User).order_by(User.id), limit=limit, offset=offset)


def get_user(db: Session, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("User not found.")
    return user


def update_user(db: Session, actor: User, user: User, changes: dict[str, Any]) -> User:
    if user.id == actor.id and (changes.get("is_admin") is False or changes.get("is_active") is False):
        raise Conflict("You cannot remove your own admin rights or deactivate yourself.", code="self_lockout")
    username = changes.get("username")
    if username is not None and username != user.username and get_by_username(db, username) is not None:
        raise conflict(["body", "username"], "A user with this username already exists.")
    password = changes.pop("password", None)
    if password is not None:
        user.hashed_password = hash_password(password)
        user.token_version += 1  # old tokens stop working
    if changes.get("is_active") is False and user.is_active:
        user.token_version += 1
    apply_changes(user, changes)
    db.commit()
    return user


def delete_user(db: Session, actor: User, user: User) -> None:
    if user.id == actor.id:
        raise Conflict("You cannot delete your own account.", code="self_lockout")
    db.delete(user)
    db.commit()


def ensure_first_admin(
    db: Session, *, username: str | None, password: str | None, email: str | None = None
) -> tuple[User | None, str | None]:
    """Create the first admin if needed.

    With FIRST_ADMIN_USERNAME/PASSWORD set, that user is created (as admin) unless it exists.
    With nothing set and no user at all, an `admin` user with a generated password is
    created; the password is returned so the caller can print it once.
    Returns (created user or None, generated password or None).
    """
    if username and password:
        if get_by_username(db, username) is not None:
            return None, None
        return create_user(
            db, username=username, email=email or f"{username}@localhost", password=password, is_admin=True
        ), None
    if db.scalar(select(User.id).limit(1)) is not None:
        return None, None
    generated = secrets.token_urlsafe(12)
    name = username or "admin"
    return create_user(
        db, username=name, email=email or f"{name}@localhost", password=generated, is_admin=True
    ), generated
