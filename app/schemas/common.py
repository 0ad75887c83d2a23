"""Types shared by every schema: strict input models, UTC datetimes, ids, pages, errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.models.base import MAX_ID

T = TypeVar("T")

MIN_YEAR, MAX_YEAR = 1970, 9998


def _to_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("datetime out of range") from exc
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"datetime must be between {MIN_YEAR} and {MAX_YEAR}")
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_string(value: Any) -> Any:
    """Inputs are ISO-8601 strings, as documented (`format: date-time`): pydantic alone would
    also take Unix times (numbers, digit strings) and booleans."""
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("Input should be an ISO-8601 date-time string, e.g. 2026-05-01T09:00:00+00:00")


UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_iso_string),
    AfterValidator(_to_utc),
    PlainSerializer(lambda d: d.isoformat(), return_type=str, when_used="json"),
    # The serializer returns a str; responses still document an RFC 3339 date-time.
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _json_number(value: Any) -> Any:
    """A JSON integer, as documented: 3 or 3.0, but not "3" or true (pydantic alone takes those)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Input should be an integer")
    return value


# Metadata for integers in request bodies, after the constraints: Annotated[int, Field(...), JSON_INT].
JSON_INT = BeforeValidator(_json_number)


class InModel(BaseModel):
    """Request bodies: unknown fields are refused (no mass assignment), strings stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PatchModel(InModel):
    """PATCH bodies: only the fields sent are changed; `null` only where the column allows it."""

    required_if_sent: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """Document `required_if_sent` fields as optional but not nullable (`null` is a 422)."""
        json_schema = handler(core_schema)
        properties = handler.resolve_ref_schema(json_schema).get("properties", {})
        for name in cls.required_if_sent:
            prop = properties.get(name, {})
            options = [option for option in prop.get("anyOf", ()) if option.get("type") != "null"]
            if len(options) == 1 and len(prop["anyOf"]) == 2:
                del prop["anyOf"]
                prop.pop("default", None)
                prop.update(options[0])
        return json_schema

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        for field in self.required_if_sent & self.model_fields_set:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class OutModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


M = TypeVar("M", bound=BaseModel)


def page_of(model: type[M], items: Any, total: int, *, limit: int, offset: int) -> Page[M]:
    return Page[model](  # type: ignore[valid-type]
        items=[model.model_validate(item) for item in items], total=total, limit=limit, offset=offset
    )


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description='Where the problem is, e.g. ["body", 3, "email"].')
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The one error shape of the whole API."""

    detail: str | list[ErrorItem] | Any = Field(description="A message, or a list of located problems.")
    code: str = Field(description="Machine-readable error code, e.g. not_found, conflict, validation_error.")

    model_config = ConfigDict(json_schema_extra={"example": {"detail": "Not found.", "code": "not_found"}})


_ERROR_EXAMPLES: dict[int, dict[str, Any]] = {
    401: {"detail": "Invalid or expired token.", "code": "invalid_token"},
    403: {"detail": "Administrator rights required.", "code": "admin_required"},
    404: {"detail": "Not found.", "code": "not_found"},
    409: {
        "detail": [{"loc": ["body", "name"], "msg": "A group with this name already exists.", "type": "conflict"}],
        "code": "conflict",
    },
    422: {
        "detail": [{"loc": ["body", 3, "email"], "msg": "value is not a valid email address", "type": "value_error"}],
        "code": "validation_error",
    },
    429: {"detail": "Too many requests; slow down.", "code": "rate_limited"},
    503: {"detail": "The database is unavailable.", "code": "service_unavailable"},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the error shape for the given statuses, each with
    an example of its own code."""
    descriptions = {
        401: "Missing, expired or invalid bearer token.",
        403: "Authenticated but not allowed (admin only, or inactive user).",
        404: "No such object visible to you.",
        409: "Conflicts with an existing object; `detail[].loc` names the field.",
        422: "Invalid input; `detail[].loc` points at the field (and row, for lists).",
        429: "Too many requests.",
        503: "A dependency (database, Redis) is unavailable.",
    }
    return {
        status: {
            "model": ErrorOut,
            "description": descriptions[status],
            "content": {"application/json": {"example": _ERROR_EXAMPLES[status]}},
        }
        for status in statuses
    }
