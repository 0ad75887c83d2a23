"""A JWT with a valid signature but a malformed claim is a 401, never a 500 (issue #10, item 20)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jose import jwt

from app.models import User
from app.settings import Settings
from tests.helpers import assert_error

_MISSING = object()


def _claims(user: User, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "ver": user.token_version,
        "typ": "access",
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    for name, value in overrides.items():
        if value is _MISSING:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


MALFORMED: dict[str, dict[str, Any]] = {
    "sub-superscript-two": {"sub": "\u00b2"},
    "sub-arabic-indic-digit": {"sub": "\u0661"},
    "sub-fullwidth-digit": {"sub": "\uff11"},
    "sub-19-nines": {"sub": "9999999999999999999"},
    "sub-above-bigint": {"sub": str(2**63)},
    "sub-40-digits": {"sub": "9" * 40},
    "sub-zero": {"sub": "0"},
    "sub-leading-zero": {"sub": "01"},
    "sub-plus-sign": {"sub": "+1"},
    "sub-minus-sign": {"sub": "-1"},
    "sub-spaces": {"sub": " 1 "},
    "sub-newline": {"sub": "1\n"},
    "sub-underscore": {"sub": "1_0"},
    "sub-decimal": {"sub": "1.0"},
    "sub-hex": {"sub": "0x1"},
    "sub-empty": {"sub": ""},
    "sub-int": {"sub": 1},
    "sub-float": {"sub": 1.0},
    "sub-bool": {"sub": True},
    "sub-null": {"sub": None},
    "sub-list": {"sub": ["1"]},
    "sub-object": {"sub": {"id": 1}},
    "sub-missing": {"sub": _MISSING},
    "ver-missing": {"ver": _MISSING},
    "ver-null": {"ver": None},
    "ver-string": {"ver": "0"},
    "ver-float": {"ver": 0.0},
    "ver-bool": {"ver": False},
    "ver-negative": {"ver": -1},
    "ver-huge": {"ver": 10**30},
    "ver-list": {"ver": [0]},
    "typ-missing": {"typ": _MISSING},
    "typ-int": {"typ": 1},
    "typ-list": {"typ": ["access"]},
    "exp-string": {"exp": "tomorrow"},
    "exp-null": {"exp": None},
    "exp-list": {"exp": [1]},
    "iat-string": {"iat": "now"},
    "iat-missing": {"iat": _MISSING},
    "iat-list": {"iat": [1]},
    "nbf-string": {"nbf": "soon"},
    "nbf-object": {"nbf": {}},
    "aud-unexpected": {"aud": "someone"},
}


@pytest.mark.parametrize("overrides", list(MALFORMED.values()), ids=list(MALFORMED))
def test_signed_token_with_a_malformed_claim_is_401(
    client: Any, settings: Settings, user: User, overrides: dict[str, Any]
) -> None:
    token = jwt.encode(_claims(user, **overrides), settings.secret_key(), algorithm=settings.api_secret_algorithm)
    response = client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 401, "invalid_token")


@pytest.mark.parametrize(
    "payload",
    [b"[1, 2]", b'"sub"', b"123", b"null", b"{not json", b"\xff\xfe"],
    ids=["list", "string", "number", "null", "not-json", "not-utf8"],
)
def test_signed_token_whose_payload_is_not_an_object_is_401(client: Any, settings: Settings, payload: bytes) -> None:
    from jose import jws

    token = jws.sign(payload, settings.secret_key(), algorithm=settings.api_secret_algorithm)
    response = client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 401, "invalid_token")


def test_well_formed_token_is_still_accepted(client: Any, settings: Settings, user: User) -> None:
    token = jwt.encode(_claims(user), settings.secret_key(), algorithm=settings.api_secret_algorithm)
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user.id
