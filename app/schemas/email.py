"""Email addresses exactly as pydantic's `EmailStr` validates them, without its cost for the
common case.

`EmailStr` runs email-validator on every address: about 0.1 ms each, most of it checking the
domain (IDNA, special-use names), so validating a 10,000-contact import took most of a second
of CPU (docs/benchmarks.md, "Bulk contact import"). Addresses of one import share a handful of
domains, and email-validator checks the domain independently of the part before the @-sign:
`FastEmailStr` checks each distinct domain once (cached) and an ASCII dot-atom local part with
email-validator's own pattern, and returns what `EmailStr` returns. Anything else (a quoted or
internationalised local part, a display name, whitespace, an address of more than 254
characters, a domain whose normal form is not plain ASCII, an invalid one) goes to `EmailStr`
itself: same result, same errors (tests/test_email_fast.py compares the two).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT, EMAIL_MAX_LENGTH
from pydantic import EmailStr, ValidatorFunctionWrapHandler, WrapValidator

_PLAIN = re.compile(r"([A-Za-z0-9_!#$%&'*+/=?^`{|}~.-]+)@([A-Za-z0-9.-]+)")


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    """The normal form email-validator gives this domain (lower case) when it is valid and plain
    ASCII after normalisation; otherwise None (the address then takes the full path)."""
    try:
        parts = validate_email("a@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return None
    normalized: str = parts.domain
    return normalized if normalized == parts.ascii_domain == domain.lower() else None


def fast_email(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """`EmailStr`'s result for a plain address (see the module docstring), else `EmailStr`'s."""
    if isinstance(value, str) and len(value) <= EMAIL_MAX_LENGTH and (plain := _PLAIN.fullmatch(value)):
        local, domain = plain.groups()
        normalized = _domain(domain)
        if normalized is not None and DOT_ATOM_TEXT.match(local):
            if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:
                local = local.lower()  # (email-validator: RFC 2142 mailbox names)
            return local + "@" + normalized
    return handler(value)


FastEmailStr = Annotated[EmailStr, WrapValidator(fast_email)]
