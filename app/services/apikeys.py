"""API keys: long-lived credentials of one user for unattended tools (`Authorization: Bearer pt_…`).

A key is `pt_` + 32 random bytes (url-safe base64, from `secrets`): shown once when created, then
only its SHA-256 is stored (a fast hash is enough for 256 random bits, and a lookup by it is one
indexed read) with its first characters (`prefix`) to tell keys apart in lists. Keys are
personal: every function here is scoped to the owner, an administrator included (someone else's
key answers 404, as a missing one).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound, ValidationFailed
from app.models import ApiKey, User
from app.services.common import paginate

KEY_PREFIX = "pt_"
KEY_BYTES = 32
PREFIX_LENGTH = 11  # "pt_" + 8 characters: shown in lists, enough to tell keys apart
# What a bearer token must look like to be looked up as a key (anything else is not one of ours).
KEY_FORMAT = re.compile(r"pt_[A-Za-z0-9_-]{32,128}")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def create_key(db: Session, owner: User, name: str, expires_at: datetime | None) -> tuple[ApiKey, str]:
    """The stored key and the key itself (returned to the caller once, never stored)."""
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise ValidationFailed(
            [{"loc": ["body", "expires_at"], "msg": "expires_at must be in the future.", "type": "value_error"}]
        )
    key = new_key()
    row = ApiKey(
        owner_id=owner.id, name=name, prefix=key[:PREFIX_LENGTH], key_hash=key_hash(key), expires_at=expires_at
    )
    db.add(row)
    db.flush()
    return row, key


def list_keys(db: Session, owner: User, *, limit: int, offset: int) -> tuple[Sequence[ApiKey], int]:
    stmt = select(ApiKey).where(ApiKey.owner_id == owner.id).order_by(ApiKey.id)
    return paginate(db, stmt, limit=limit, offset=offset)


def get_key(db: Session, owner: User, key_id: int) -> ApiKey:
    found = db.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.owner_id == owner.id))
    if found is None:
        raise NotFound("ApiKey not found.")
    return found


def revoke_key(db: Session, key: ApiKey) -> None:
    db.delete(key)
    db.flush()
