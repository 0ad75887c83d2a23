"""API keys: create (the key shown once), list (never the key nor its hash)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from app.schemas.common import Id, InModel, OutModel, UtcDatetime

_EXAMPLE_KEY = "pt_3q9x2l7zp4r8w1y6h0j5g2k9m4e7t3b8v1n6c0f5d2s"


class ApiKeyCreate(InModel):
    name: Annotated[
        str, Field(min_length=1, max_length=200, examples=["newsletter tool"], description="What the key is for.")
    ]
    expires_at: UtcDatetime | None = Field(
        default=None, description="When the key stops working (in the future); none: until revoked."
    )


class ApiKeyOut(OutModel):
    id: Id
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.", examples=[_EXAMPLE_KEY[:11]])
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None = Field(
        description="When the key was last used (updated at most once a minute), or null."
    )
    expires_at: UtcDatetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(
        description="The key: send it as `Authorization: Bearer pt_…`. Shown this once only; store it safely.",
        examples=[_EXAMPLE_KEY],
    )

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": 1,
                "name": "newsletter tool",
                "prefix": _EXAMPLE_KEY[:11],
                "created_at": "2026-05-01T09:00:00+00:00",
                "last_used_at": None,
                "expires_at": None,
                "key": _EXAMPLE_KEY,
            }
        }
    )
