"""The one place for password hashing (argon2 via passlib/libpass) and JWTs (python-jose).

The accepted JWT algorithm list is pinned to the single configured HMAC algorithm,
so `alg: none` and HS/RS confusion tokens are rejected by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jose import JWTError, jwt
from passlib.context import CryptContext

_pwd_context = CryptContext(schemes=["argon2"], deprecated="auto")

# A valid argon2 hash of a random password, verified when the user does not exist
# so that a login for an unknown username costs as much as a wrong password.
_DUMMY_HASH = _pwd_context.hash("not-a-real-password-2f3c9a")

TOKEN_TYPE = "access"
# A user id as issued: a canonical positive decimal in ASCII digits (no sign, no leading zero),
# within the BIGINT primary key range; anything else in `sub` is a malformed token.
_SUB = re.compile(r"[1-9][0-9]{0,18}")
_MAX_USER_ID = 2**63 - 1
_MAX_TOKEN_VERSION = 2**31 - 1


def hash_password(password: str) -> str:
    hashed: str = _pwd_context.hash(password)
    return hashed


def verify_password(password: str, hashed: str | None) -> bool:
    if hashed is None:
        _pwd_context.verify(password, _DUMMY_HASH)
        return False
    try:
        ok: bool = _pwd_context.verify(password, hashed)
    except (ValueError, TypeError):
        return False
    return ok


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    token_version: int
    expires: int  # `exp`: Unix time after which the token is refused


class InvalidToken(Exception):
    """Any reason a bearer token is not acceptable (expired, malformed, wrong signature...)."""


def create_access_token(
    user_id: int, token_version: int, *, secret: str, algorithm: str, expires_minutes: int, now: datetime | None = None
) -> str:
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "ver": token_version,
        "typ": TOKEN_TYPE,
        "iat": int(issued.timestamp()),
        "nbf": int(issued.timestamp()),
        "exp": int((issued + timedelta(minutes=expires_minutes)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=algorithm)


def decode_access_token(token: str, *, secret: str, algorithm: str) -> TokenClaims:
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != algorithm:
            raise InvalidToken("unexpected algorithm")
        claims = jwt.decode(
            token,
            secret,
            algorithms=[algorithm],
            options={"require_exp": True, "require_iat": True, "require_sub": True},
        )
    except (JWTError, TypeError, ValueError, OverflowError) as exc:
        # python-jose calls int() on exp/iat/nbf as sent: `"exp": null` or `[1]` raise TypeError.
        raise InvalidToken(exc.__class__.__name__) from exc
    return TokenClaims(
        user_id=_user_id(claims.get("sub")), token_version=_token_version(claims), expires=int(claims["exp"])
    )


def _user_id(sub: object) -> int:
    if not isinstance(sub, str) or _SUB.fullmatch(sub) is None or int(sub) > _MAX_USER_ID:
        raise InvalidToken("malformed subject")
    return int(sub)


def _token_version(claims: dict[str, Any]) -> int:
    if claims.get("typ") != TOKEN_TYPE:
        raise InvalidToken("wrong token type")
    ver = claims.get("ver")
    # bool is an int subclass: `true` must not pass for version 1.
    if type(ver) is not int or not 0 <= ver <= _MAX_TOKEN_VERSION:
        raise InvalidToken("malformed version")
    return ver
