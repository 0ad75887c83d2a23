from __future__ import annotations

import email.message
import json
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from app import cooperative
from app.deps import CurrentUser, IdPath, PageDep, ReadSessionDep, SessionDep
from app.models import ContactStatus
from app.routing import PrefixRouter, TransactionRoute
from app.schemas.common import ErrorOut, Page, UtcDatetime, error_responses, page_of
from app.schemas.contact import (
    MAX_BULK_CONTACTS,
    ContactBatchUpdate,
    ContactBatchUpdated,
    ContactBulkOut,
    ContactCreate,
    ContactOut,
    ContactUpdate,
)
from app.services import campaigns, contacts, contacts_bulk

router = PrefixRouter(
    prefix="/api/v1",
    tags=["contacts"],
    responses=error_responses(401, 403, 404, 422, 429),
    route_class=TransactionRoute,
)

JSON = "application/json"
_BULK = TypeAdapter(list[ContactCreate])
_ONE = TypeAdapter(ContactCreate)
_OUT_LIST = TypeAdapter(list[ContactOut])

_BODY_SCHEMA = {
    "oneOf": [
        {"$ref": "#/components/schemas/ContactCreate"},
        {
            "type": "array",
            "items": {"$ref": "#/components/schemas/ContactCreate"},
            "minItems": 1,
            "maxItems": MAX_BULK_CONTACTS,
        },
    ]
}
_BODY_EXAMPLES = {
    "one": {
        "summary": "One contact",
        "value": {"email": "ana@example.com", "name": "Ana", "scheduled_at": "2026-05-01T09:00:00+00:00"},
    },
    "bulk": {
        "summary": "A list (bulk import, all-or-nothing)",
        "value": [
            {"email": "ana@example.com", "name": "Ana"},
            {"email": "bo@example.com", "scheduled_at": "2026-05-01T09:00:00Z"},
        ],
    },
}


def _invalid(errors: list[dict[str, Any]]) -> RequestValidationError:
    return RequestValidationError(errors)


def _prefixed(exc: ValidationError) -> RequestValidationError:
    return _invalid(
        [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_input=False, include_url=False)]
    )


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _validate_rows(raw: list[Any]) -> list[ContactCreate]:
    """Validate a list in chunks, pausing for the event loop between them; every row's errors."""
    rows: list[ContactCreate] = []
    errors: list[Any] = []
    for offset, chunk in cooperative.chunks(raw):
        try:
            rows.extend(_BULK.validate_python(chunk))
        except ValidationError as exc:
            errors.extend(
                {**err, "loc": ("body", offset + int(err["loc"][0]), *err["loc"][1:])}
                for err in exc.errors(include_input=False, include_url=False)
            )
    if errors:
        raise _invalid(errors)
    return rows


def _bulk_json(created: list[dict[str, Any]]) -> bytes:
    """`ContactBulkOut` of these contacts' columns as JSON, validated and serialised a chunk at a
    time (one 10,000-item dump holds the GIL for tens of milliseconds in one piece; see
    app/cooperative.py)."""
    parts = [_OUT_LIST.dump_json(_OUT_LIST.validate_python(chunk))[1:-1] for _, chunk in cooperative.chunks(created)]
    return b'{"items":[' + b",".join(parts) + b'],"total":' + str(len(created)).encode() + b"}"


def _parse_contacts(body: bytes) -> ContactCreate | list[ContactCreate]:
    """One contact object, or a list of 1..10,000; errors located as ["body", row, field].

    CPU-bound (10,000 rows: JSON decoding and validation take a good part of a second): called in
    the threadpool, never on the event loop that serves every tenant's pixels.
    """
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # ValueError covers JSONDecodeError and integers with too many digits;
        # RecursionError a pathologically nested document.
        raise _invalid([{"loc": ("body",), "msg": "Body is not valid JSON.", "type": "json_invalid"}]) from None
    try:
        if isinstance(raw, list):
            if not 1 <= len(raw) <= MAX_BULK_CONTACTS:
                raise _invalid(
                    [{"loc": ("body",), "msg": f"Send between 1 and {MAX_BULK_CONTACTS} contacts.", "type": "too_long"}]
                )
            return _validate_rows(raw)
        if isinstance(raw, dict):
            return _ONE.validate_python(raw)
    except ValidationError as exc:
        raise _prefixed(exc) from None
    raise _invalid([{"loc": ("body",), "msg": "Send a contact object or a list of them.", "type": "model_type"}])


@router.get("/groups/{group_id}/contacts", response_model=Page[ContactOut])
def list_contacts(
    group_id: IdPath,
    user: CurrentUser,
    db: ReadSessionDep,
    page: PageDep,
    status: Annotated[ContactStatus | None, Query()] = None,
    scheduled_before: Annotated[
        UtcDatetime | None, Query(description="Only contacts scheduled strictly before.")
    ] = None,
    scheduled_after: Annotated[UtcDatetime | None, Query(description="Only contacts scheduled at or after.")] = None,
) -> Page[ContactOut]:
    group = campaigns.get_group(db, user, group_id)
    items, total = contacts.list_contacts(
        db,
        group,
        limit=page.limit,
        offset=page.offset,
        status=status,
        scheduled_before=scheduled_before,
        scheduled_after=scheduled_after,
    )
    return page_of(ContactOut, items, total, limit=page.limit, offset=page.offset)


@router.post(
    "/groups/{group_id}/contacts",
    status_code=201,
    response_model=ContactOut | ContactBulkOut,
    responses=error_responses(409),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _BODY_SCHEMA, "examples": _BODY_EXAMPLES}},
        }
    },
)
async def create_contacts(request: Request, group_id: IdPath, user: CurrentUser, db: SessionDep) -> Response:
    """Schedule one contact, or import a list of up to 10,000 (all-or-nothing).

    A list answers `{"items": [...], "total": N}` in the order sent. Any invalid or
    duplicate row rejects the whole list; `detail[].loc` is `["body", row, field]`.
    """
    if not _is_json(request.headers.get("content-type")):
        # As for every other body of the API (FastAPI's strict content type): JSON only.
        raise _invalid(
            [{"loc": ("body",), "msg": "Send JSON (Content-Type: application/json).", "type": "model_attributes_type"}]
        )
    body = await request.body()

    def _create() -> Response:
        # Parsing, validation, the inserts and the response's serialisation all run here, in the
        # threadpool: the event loop only receives the body. A bulk request: it steps aside only
        # for other requests (app/cooperative.py).
        with cooperative.bulk():
            payload = _parse_contacts(body)
            group = campaigns.get_group(db, user, group_id)
            if isinstance(payload, list):
                return Response(
                    _bulk_json(contacts.import_contacts(db, group, payload)), status_code=201, media_type=JSON
                )
            created = contacts.create_contacts(db, group, [payload], row_locs=False)
            return Response(ContactOut.model_validate(created[0]).model_dump_json(), status_code=201, media_type=JSON)

    return await run_in_threadpool(_create)


_BATCH_404: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorOut,
        "description": "The group is not yours (`Group not found.`), or some ids are not contacts of this group: "
        "nothing is changed, and `detail` locates every such id (`loc`: `body`, `ids`, its index in `ids`).",
        "content": {
            "application/json": {
                "example": {
                    "detail": [
                        {"loc": ["body", "ids", 2], "msg": "No contact 7 in this group.", "type": "not_found"},
                        {"loc": ["body", "ids", 5], "msg": "No contact 9 in this group.", "type": "not_found"},
                    ],
                    "code": "not_found",
                }
            }
        },
    }
}


@router.patch(
    "/groups/{group_id}/contacts",
    response_model=ContactBatchUpdated,
    responses=_BATCH_404,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "sent": {
                            "summary": "Mark contacts sent (sent_at: now, unless they have one)",
                            "value": {"ids": [101, 102, 103], "status": "sent"},
                        },
                        "consent": {
                            "summary": "Withdraw tracking consent",
                            "value": {"ids": [104], "tracking": "off"},
                        },
                    }
                }
            }
        }
    },
)
def update_group_contacts(
    group_id: IdPath, body: ContactBatchUpdate, user: CurrentUser, db: SessionDep
) -> ContactBatchUpdated:
    """Set the status (with `sent_at`) and/or the tracking consent of up to 10,000 contacts of the group.

    All or nothing: an id that is not a contact of this group (missing, elsewhere, someone
    else's) answers 404 locating every such id (`detail[].loc`: `["body", "ids", index]`), and
    nothing changes. Repeated ids count
    once. The reports move with the contacts, as for a single PATCH.
    """
    group = campaigns.get_group(db, user, group_id)
    return ContactBatchUpdated(updated=contacts_bulk.update_group_contacts(db, group, body))


@router.get("/contacts/{contact_id}", response_model=ContactOut)
def get_contact(contact_id: IdPath, user: CurrentUser, db: SessionDep) -> ContactOut:
    return ContactOut.model_validate(contacts.get_contact(db, user, contact_id))


@router.patch("/contacts/{contact_id}", response_model=ContactOut, responses=error_responses(409))
def update_contact(contact_id: IdPath, body: ContactUpdate, user: CurrentUser, db: SessionDep) -> ContactOut:
    contact = contacts.get_contact(db, user, contact_id)
    return ContactOut.model_validate(contacts.update_contact(db, contact, body))


@router.delete("/contacts/{contact_id}", status_code=204)
def delete_contact(contact_id: IdPath, user: CurrentUser, db: SessionDep) -> Response:
    """Delete the contact and everything recorded about them (pixels, openings, clicks)."""
    contacts.delete_contact(db, contacts.get_contact(db, user, contact_id))
    return Response(status_code=204)
