"""`POST /api/v1/conversions`: a backend reports conversions (docs/conversions.md, "Backend API")."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from app import cooperative
from app.deps import CurrentUser, SessionDep
from app.routing import PrefixRouter, TransactionRoute
from app.schemas.common import ErrorOut, error_responses
from app.schemas.conversions_api import MAX_BULK_CONVERSIONS, ConversionPost, ConversionsRecorded
from app.services import conversions
from app.tracking.attribution import AttributionCodec

router = PrefixRouter(
    prefix="/api/v1", tags=["conversions"], responses=error_responses(401, 403, 422, 429), route_class=TransactionRoute
)

_ONE = TypeAdapter(ConversionPost)
_ROWS = TypeAdapter(list[ConversionPost])
JSON = "application/json"

_BODY_SCHEMA = {
    "oneOf": [{"$ref": "#/components/schemas/ConversionPost"}, {"$ref": "#/components/schemas/ConversionBatch"}]
}
_BODY_EXAMPLES = {
    "token": {
        "summary": "One conversion, by the click's attribution token",
        "value": {"token": "<the pt parameter>", "name": "purchase", "value": "42.50", "currency": "EUR", "id": "o-1"},
    },
    "contact": {
        "summary": "One conversion, by contact id",
        "value": {"contact_id": 101, "name": "signup", "occurred_at": "2026-05-01T09:00:00Z"},
    },
    "bulk": {
        "summary": "Offline import (up to 10,000, all or nothing)",
        "value": {
            "conversions": [
                {"contact_id": 101, "name": "purchase", "value": "19.90", "currency": "EUR", "id": "A-1001"},
                {"contact_id": 102, "name": "purchase", "value": "5", "currency": "USD", "id": "A-1002"},
            ]
        },
    },
}
_404: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorOut,
        "description": "Some conversions name nothing you can see: a token that does not open (forged, altered, "
        "expired) or names another account's campaign, a contact id that is not yours. Nothing is stored; "
        '`detail[].loc` locates each one (`["body", "conversions", index, "token"]` in a batch).',
        "content": {
            "application/json": {
                "example": {
                    "detail": [
                        {"loc": ["body", "conversions", 2, "token"], "msg": "Token not valid.", "type": "not_found"},
                        {
                            "loc": ["body", "conversions", 5, "contact_id"],
                            "msg": "Contact not found.",
                            "type": "not_found",
                        },
                    ],
                    "code": "not_found",
                }
            }
        },
    },
    413: {"model": ErrorOut, "description": "The body is larger than MAX_BODY_BYTES."},
}


def _invalid(loc: tuple[str | int, ...], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


def _located(exc: ValidationError, offset: int | None = None) -> list[dict[str, Any]]:
    """The errors located in the body (`offset`: of a chunk of `conversions`)."""
    errors = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = err["loc"]
        if offset is not None:
            loc = ("conversions", offset + int(loc[0]), *loc[1:])
        errors.append({**err, "loc": ("body", *loc)})
    return errors


def _parse(body: bytes) -> tuple[list[ConversionPost], list[tuple[str | int, ...]]]:
    """The conversions and where each is in the body. CPU-bound (10,000 rows): in the threadpool."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _invalid(("body",), "Body is not valid JSON.", "json_invalid") from None
    if not isinstance(raw, dict):
        raise _invalid(("body",), 'Send a conversion object or {"conversions": [...]}.', "model_type")
    if "conversions" not in raw:
        try:
            return [_ONE.validate_python(raw)], [()]
        except ValidationError as exc:
            raise RequestValidationError(_located(exc)) from None
    rows = raw["conversions"]
    if set(raw) != {"conversions"}:
        extra = sorted(set(raw) - {"conversions"})[0]
        raise _invalid(("body", extra), "Extra inputs are not permitted", "extra_forbidden")
    if not isinstance(rows, list):
        raise _invalid(("body", "conversions"), "Input should be a valid list", "list_type")
    if not 1 <= len(rows) <= MAX_BULK_CONVERSIONS:
        raise _invalid(("body", "conversions"), f"Send between 1 and {MAX_BULK_CONVERSIONS} conversions.", "too_long")
    posts: list[ConversionPost] = []
    errors: list[dict[str, Any]] = []
    for offset, chunk in cooperative.chunks(rows):
        try:
            posts.extend(_ROWS.validate_python(chunk))
        except ValidationError as exc:
            errors.extend(_located(exc, offset))
    if errors:
        raise RequestValidationError(errors)
    return posts, [("conversions", i) for i in range(len(posts))]


def _codec(request: Request) -> AttributionCodec:
    codec: AttributionCodec = request.app.state.tracker.attribution.codec
    return codec


@router.post(
    "/conversions",
    response_model=ConversionsRecorded,
    responses=_404,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": _BODY_SCHEMA, "examples": _BODY_EXAMPLES}},
        }
    },
)
async def record_conversions(request: Request, user: CurrentUser, db: SessionDep) -> Response:
    """Report conversions from your backend: one, or `{"conversions": [...]}` (up to 10,000, all or nothing).

    Each names the click's attribution token (`token`: the `pt` parameter the landing page
    received) or one of your contacts (`contact_id`), with `name`, optionally `value` + `currency`
    (a decimal and its ISO 4217 code) and your own `id` (an order id: the same id for the same
    contact counts once, whether posted here or by the landing page). Contacts whose tracking is
    `off` are skipped; `anonymous` ones count in aggregates only.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != JSON:
        raise _invalid(("body",), "Send JSON (Content-Type: application/json).", "model_attributes_type")
    body = await request.body()
    codec = _codec(request)

    def _record() -> Response:
        posts, locs = _parse(body)
        result = conversions.record(db, user, posts, codec, locs=locs)
        return Response(result.model_dump_json(), media_type=JSON)

    return await run_in_threadpool(_record)
