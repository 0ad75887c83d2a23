"""`FastEmailStr` (app/schemas/email.py) answers exactly as pydantic's `EmailStr`: same value,
same errors, for plain addresses (its fast path) and every kind it hands to `EmailStr`."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import EmailStr, Field, TypeAdapter, ValidationError

from app.schemas.email import FastEmailStr

SLOW = TypeAdapter(Annotated[EmailStr, Field(max_length=254)])
FAST = TypeAdapter(Annotated[FastEmailStr, Field(max_length=254)])

CASES: list[Any] = [
    # plain, in every case
    "a@example.com",
    "A.B@Example.COM",
    "a+tag@sub.example.co.uk",
    "a/b=c?d^e`f{g|h}i~j!k#l$m%n&o'p*q@example.com",
    "Postmaster@EXAMPLE.com",  # (RFC 2142 names: lower-cased by email-validator)
    "ABUSE@example.com",
    "a@1example.com",
    "a@xn--d1acpjx3f.xn--p1ai",  # punycode: normalised to Unicode, so EmailStr's path
    "a@xn--bcher-kva.ch",
    # dots, hyphens, labels
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@example.com.",
    "a@.example.com",
    "a@example..com",
    "a@ex-.com",
    "a@-ex.com",
    "a@ab--cd.com",
    "a@ex_ample.com",
    # special-use and single-label domains, numeric top-level domains
    "a@localhost",
    "a@test",
    "a@foo.test",
    "a@x.invalid",
    "a@b.onion",
    "a@arpa",
    "a@x.local",
    "a@example",
    "a@123.123.123.123",
    "a@example.123",
    "a@1.2",
    # lengths
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a" * 242 + "@example.com",
    "a" * 243 + "@example.com",
    "a@" + ".".join(["a" * 63] * 4),
    "a@" + ".".join(["a" * 60] * 4) + ".com",
    # not plain: EmailStr's own path
    " a@example.com",
    "a@example.com ",
    "Ana <a@example.com>",
    '"a b"@example.com',
    "ü@example.com",
    "a@bücher.ch",
    "a@@example.com",
    "a@b@example.com",
    "a@example.com\n",
    "",
    "@example.com",
    "a@",
    "a@[127.0.0.1]",
    5,
    None,
    b"a@example.com",
]


def _outcome(adapter: TypeAdapter[Any], value: Any) -> tuple[str, Any]:
    try:
        return "ok", adapter.validate_python(value)
    except ValidationError as exc:
        return "error", exc.errors(include_url=False)


@pytest.mark.parametrize("value", CASES, ids=lambda v: repr(v)[:40])
def test_fast_email_answers_as_email_str(value: Any) -> None:
    assert _outcome(FAST, value) == _outcome(SLOW, value)


def test_the_published_schema_is_email_str_s() -> None:
    assert FAST.json_schema() == SLOW.json_schema() == {"type": "string", "format": "email", "maxLength": 254}
