"""Bodies of the backend API `POST /api/v1/conversions` (docs/conversions.md, "Backend API"):
one conversion, or `{"conversions": [...]}` with up to 10,000 of them (all or nothing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import ConfigDict, Field, model_validator

from app.models.base import MAX_ID
from app.schemas.common import JSON_INT, InModel, OutModel, UtcDatetime
from app.schemas.conversions import ConversionFields
from app.tracking.attribution import CLOCK_SKEW, MAX_LENGTH

MAX_BULK_CONVERSIONS = 10_000
_REFERENCES = ("token", "contact_id")


def _one_reference_schema(schema: dict[str, Any]) -> None:
    """Document "exactly one of token and contact_id, never null" (what `_one_reference` checks)."""
    for name in _REFERENCES:
        prop = schema["properties"][name]
        prop.update(next(option for option in prop.pop("anyOf") if option.get("type") != "null"))
        prop.pop("default", None)
    schema["oneOf"] = [{"required": [name]} for name in _REFERENCES]


class ConversionPost(ConversionFields):
    """One conversion, named by the attribution token of the click (`pt`) or by a contact id."""

    model_config = ConfigDict(json_schema_extra=_one_reference_schema)

    token: Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)] | None = Field(
        default=None,
        description="The `pt` parameter the click added to the landing page's URL (exactly one of `token` and "
        "`contact_id`).",
        examples=["AbC…87 characters…xyz"],
    )
    contact_id: Annotated[int, Field(ge=1, le=MAX_ID), JSON_INT] | None = Field(
        default=None, description="A contact of one of your campaigns (exactly one of `token` and `contact_id`)."
    )
    occurred_at: UtcDatetime | None = Field(
        default=None,
        description=f"When it happened (not in the future; {CLOCK_SKEW} s of clock skew allowed); default: now.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_null_reference(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(name in data and data[name] is None for name in _REFERENCES):
            raise ValueError("token and contact_id cannot be null (send one of them)")
        return data

    @model_validator(mode="after")
    def _one_reference(self) -> Self:
        if (self.token is None) == (self.contact_id is None):
            raise ValueError("give exactly one of token and contact_id")
        if self.occurred_at is not None and self.occurred_at > datetime.now(UTC) + timedelta(seconds=CLOCK_SKEW):
            raise ValueError("occurred_at is in the future")
        return self


class ConversionBatch(InModel):
    conversions: list[ConversionPost] = Field(
        min_length=1, max_length=MAX_BULK_CONVERSIONS, description="Up to 10,000 conversions, all or nothing."
    )


class ConversionsRecorded(OutModel):
    """What became of the conversions sent (received = recorded + duplicates + skipped)."""

    received: int = Field(description="Conversions in the request.", examples=[3])
    recorded: int = Field(description="Newly stored.", examples=[1])
    duplicates: int = Field(
        description="Already stored (the same `id` for the same contact, posted before or twice in this request).",
        examples=[1],
    )
    skipped: int = Field(
        description="Not stored by the consent rules: the contact's tracking is `off`, or the token's contact or "
        "group has been deleted since the click.",
        examples=[1],
    )
