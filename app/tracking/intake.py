"""The public conversion intake, read top to bottom (docs/conversions.md, "Browser snippet and
public intake"): `POST /e` (and its CORS preflight), `GET /e.gif`, and the script `GET /t.js`.

As the pixel path (app/tracking/tracker.py), and behind the same ASGI fast path: rate limit per
IP (app/ratelimit.py), body ≤ 4 KB, the fields validated (app/schemas/conversions.py), the
attribution token opened in-process (app/tracking/attribution.py), the page's `Origin` checked
against the token's campaign's `conversion_origins` (app/tracking/origins.py, in memory), then
the conversion goes on the pixels' group-commit queue (app/tracking/queue.py) and the ingest
stores it (app/tracking/conversions.store: consent, idempotency on the order id). Never a
database read on the request path. Every refusal records nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from pydantic import Field, ValidationError

from app import metrics
from app.ratelimit import RateLimiter
from app.schemas.conversions import ConversionFields
from app.tracking import script
from app.tracking.attribution import Attribution, AttributionCodec
from app.tracking.events import CONVERSION, ConversionEvent, new_event_id
from app.tracking.origins import OriginsCache
from app.tracking.queue import EventQueue
from app.tracking.tracker import _NOT_FOUND_REPLY, GIF, GIF_HEADERS, NO_CACHE, Reply

MAX_BODY = 4096
RATE_WINDOW = 60  # seconds
PREFLIGHT_MAX_AGE = b"600"
_JSON_TYPES = (b"application/json", b"text/plain")


class ConversionPost(ConversionFields):
    """POST /e (and GET /e.gif's query): the attribution token `pt` and the conversion's fields."""

    pt: str = Field(description="The attribution token of the landing URL (any other string: 404).")


def _error(status: int, detail: Any, code: str, extra: list[tuple[bytes, bytes]] | None = None) -> Reply:
    body = json.dumps({"detail": detail, "code": code}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", NO_CACHE),
    ]
    return status, headers + (extra or []), body


_TOO_LARGE = _error(413, f"The request body is larger than {MAX_BODY} bytes.", "payload_too_large")
_WRONG_TYPE = _error(415, "Send application/json or text/plain (a JSON object).", "unsupported_media_type")
_NO_ORIGIN = _error(403, "This page's origin may not post conversions of this campaign.", "forbidden")
_ACCEPTED: Reply = (204, [(b"cache-control", NO_CACHE)], b"")


def _invalid(exc: ValidationError | None, where: str) -> Reply:
    errors: list[dict[str, Any]]
    if exc is None:
        errors = [{"loc": [where], "msg": "Send a JSON object.", "type": "model_attributes_type"}]
    else:
        errors = [
            {"loc": [where, *err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    return _error(422, errors, "validation_error")


def _header(headers: Any, wanted: bytes) -> bytes | None:
    for name, value in headers:
        if name == wanted:
            return bytes(value)
    return None


async def read_limited(chunks: AsyncIterator[bytes], limit: int = MAX_BODY) -> bytes | None:
    """The body, or None as soon as it goes past `limit` (the rest is never read)."""
    body = b""
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            return None
    return body


class Intake:
    def __init__(
        self,
        codec: AttributionCodec,
        queue: EventQueue,
        origins: OriginsCache,
        limiter: RateLimiter,
        *,
        rate_limit: int,
        disabled: bool = False,
        respect_dnt: bool = False,
    ) -> None:
        self.codec = codec
        self.queue = queue
        self.origins = origins
        self.limiter = limiter
        self.rate_limit = rate_limit  # per IP and minute; 0: none
        self.disabled = disabled  # TRACKING_DISABLED: answer, record nothing
        self.respect_dnt = respect_dnt

    async def _limited(self, ip: str) -> Reply | None:
        if not self.rate_limit:
            return None
        wait = await self.limiter.hit(f"e:{ip}", self.rate_limit, RATE_WINDOW)
        if wait is None:
            return None
        return _error(429, "Too many requests.", "rate_limited", [(b"retry-after", str(max(1, int(wait))).encode())])

    def _cors(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """CORS headers for a page of a known origin (any campaign's: errors are readable too)."""
        if origin is None or not self.origins.allowed_anywhere(origin.decode("latin-1")):
            return [(b"vary", b"origin")]
        return [(b"access-control-allow-origin", origin), (b"vary", b"origin")]

    def preflight(self, headers: Any) -> Reply:
        """OPTIONS /e: the preflight carries no token, so any campaign's origin is allowed here;
        the POST itself is checked against its token's campaign."""
        origin = _header(headers, b"origin")
        method = _header(headers, b"access-control-request-method")
        if origin is None or method != b"POST" or not self.origins.allowed_anywhere(origin.decode("latin-1")):
            return _error(403, "This origin may not post conversions.", "forbidden", [(b"vary", b"origin")])
        return (
            204,
            [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", b"POST"),
                (b"access-control-allow-headers", b"content-type"),
                (b"access-control-max-age", PREFLIGHT_MAX_AGE),
                (b"vary", b"origin"),
                (b"cache-control", NO_CACHE),
            ],
            b"",
        )

    async def post(self, headers: Any, ip: str, chunks: AsyncIterator[bytes]) -> Reply:
        """POST /e: 204 once the conversion is queued (or is a repeat); nothing recorded otherwise."""
        origin = _header(headers, b"origin")
        cors = self._cors(origin)
        refused = await self._limited(ip)
        if refused is not None:
            return refused[0], refused[1] + cors, refused[2]
        length = _header(headers, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return _TOO_LARGE[0], _TOO_LARGE[1] + cors, _TOO_LARGE[2]
        content_type = (_header(headers, b"content-type") or b"").split(b";", 1)[0].strip().lower()
        if content_type not in _JSON_TYPES:
            return _WRONG_TYPE[0], _WRONG_TYPE[1] + cors, _WRONG_TYPE[2]
        body = await read_limited(chunks)
        if body is None:
            return _TOO_LARGE[0], _TOO_LARGE[1] + cors, _TOO_LARGE[2]
        if not body.lstrip().startswith(b"{"):
            reply = _invalid(None, "body")
            return reply[0], reply[1] + cors, reply[2]
        try:
            fields = ConversionPost.model_validate_json(body)
        except ValidationError as exc:
            reply = _invalid(exc, "body")
            return reply[0], reply[1] + cors, reply[2]
        status, out, reply_body = await self._accept(fields, origin, headers, origin_required=True)
        return status, out + cors, reply_body

    async def gif(self, query: bytes, headers: Any, ip: str) -> Reply:
        """GET /e.gif?pt=…&name=…[&value=…&currency=…][&id=…]: the transparent GIF once queued."""
        refused = await self._limited(ip)
        if refused is not None:
            return refused
        wanted = {"pt", "name", "value", "currency", "id"}
        params = {k: v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k in wanted}
        try:
            fields = ConversionPost.model_validate(params)
        except ValidationError as exc:
            return _invalid(exc, "query")
        origin = _header(headers, b"origin")
        status, _headers, _body = await self._accept(fields, origin, headers, origin_required=False)
        return (200, GIF_HEADERS, GIF) if status == 204 else (status, _headers, _body)

    async def _accept(
        self, fields: ConversionPost, origin: bytes | None, headers: Any, *, origin_required: bool
    ) -> Reply:
        """Queue the conversion if its token opens and its page may post it. A request without
        `Origin` (a server, an image) is taken on GET /e.gif only: a browser's POST always has one."""
        token = self.codec.open(fields.pt)
        if token is None:
            metrics.invalid_token(CONVERSION)
            return _NOT_FOUND_REPLY
        if origin is None:
            if origin_required:
                metrics.conversion_request("refused")
                return _NO_ORIGIN
        elif not self.origins.allowed(token.campaign_id, origin.decode("latin-1")):
            metrics.conversion_request("refused")
            return _NO_ORIGIN
        if self.disabled or (self.respect_dnt and _opted_out(headers)):
            return _ACCEPTED
        recorded = await self.queue.submit(_event(token, fields))
        metrics.conversion_request("recorded" if recorded else "deduplicated")
        return _ACCEPTED

    def script(self, headers: Any, query: bytes) -> Reply:
        """GET /t.js: the snippet, cacheable (ETag; long-lived when asked for its version)."""
        return script.reply(_header(headers, b"if-none-match"), query)


def _opted_out(headers: Any) -> bool:
    return any(name in (b"dnt", b"sec-gpc") and value.strip() == b"1" for name, value in headers)


def _event(token: Attribution, fields: ConversionPost) -> ConversionEvent:
    return ConversionEvent(
        token.campaign_id,
        token.group_id,
        token.contact_id,
        token.link_id,
        token.click_event_id,
        time.time_ns() // 1_000_000,
        "v" + new_event_id(),
        fields.name,
        fields.value,
        fields.currency,
        fields.id,
    )
