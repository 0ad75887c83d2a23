"""`GET /t.js`: the conversion snippet (app/static/t.js, package data), served from memory.

Cacheable: a strong ETag (If-None-Match → 304), `max-age` of an hour at `/t.js`, a year and
`immutable` at `/t.js?v=<VERSION>` (the versioned URL the docs give: a new version is a new URL).
`VERSION` is the script's own `pixeltrack.version`.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from importlib import resources

from app.tracking.tracker import Reply

MAX_BYTES = 3 * 1024  # as shipped (tests/test_conversion_intake.py checks it)
SHORT, LONG = b"public, max-age=3600", b"public, max-age=31536000, immutable"


@lru_cache(maxsize=1)
def source() -> bytes:
    return resources.files("app").joinpath("static/t.js").read_bytes()


@lru_cache(maxsize=1)
def version() -> str:
    found = re.search(rb'api\.version = "([^"]+)"', source())
    assert found is not None, "t.js names its version"
    return found.group(1).decode()


@lru_cache(maxsize=1)
def etag() -> bytes:
    return b'"' + hashlib.sha256(source()).hexdigest()[:20].encode() + b'"'


def reply(if_none_match: bytes | None, query: bytes) -> Reply:
    cache = LONG if query == f"v={version()}".encode() else SHORT
    common = [
        (b"cache-control", cache),
        (b"etag", etag()),
        (b"cross-origin-resource-policy", b"cross-origin"),  # any landing page may load it
        (b"x-content-type-options", b"nosniff"),
    ]
    if if_none_match is not None and etag() in [tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")]:
        return 304, common, b""
    body = source()
    headers = [
        (b"content-type", b"text/javascript; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *common,
    ]
    return 200, headers, body
