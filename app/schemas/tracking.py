"""Pixels, openings, links and tracked URLs."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Annotated

from pydantic import AnyHttpUrl, Field, StrictBool, WithJsonSchema, field_validator

from app.models import ClientKind
from app.models.tracking import MAX_PIXEL_NUMBER
from app.schemas.common import JSON_INT, Id, InModel, OutModel, PatchModel, UtcDatetime
from app.tracking.events import public_event_id

PixelNumber = Annotated[int, Field(ge=1, le=MAX_PIXEL_NUMBER), JSON_INT]


class PixelCreate(InModel):
    number: PixelNumber | None = Field(
        default=None, description="Rendering slot of this pixel for the contact; default: the next free number."
    )


class PixelUpdate(PatchModel):
    number: PixelNumber


class PixelOut(OutModel):
    id: Id
    uuid: str
    contact_id: Id
    number: int
    created_at: UtcDatetime
    url: str = Field(description="Public tracking URL to embed in the email.")
    html: str = Field(description="A ready <img> tag for the email's HTML.")


# Documented as what `_valid_ip` accepts: an IPv4 or IPv6 address (stored normalised).
IpAddress = Annotated[
    str,
    Field(max_length=45),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6", "maxLength": 45}],
            "examples": ["203.0.113.7"],
        }
    ),
]


def _valid_ip(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ip_address(value))
    except ValueError as exc:
        raise ValueError("not a valid IPv4 or IPv6 address") from exc


class OpeningCreate(InModel):
    opened_at: UtcDatetime | None = Field(default=None, description="Default: now.")
    ip: IpAddress | None = None
    user_agent: Annotated[str, Field(max_length=512)] | None = None
    client: ClientKind = ClientKind.unknown
    event_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = Field(
        default=None,
        description=(
            "Idempotency key of this pixel: a second opening of the same pixel with the same event_id is a 409. "
            "Keys of other pixels (and tracking ids) never conflict. Returned as given, except a key longer than "
            "63 characters minus the pixel id's digits (e.g. 57 for ids below 1,000,000), which is returned as "
            "`#` + a digest of it."
        ),
    )

    _ip = field_validator("ip")(_valid_ip)


class OpeningUpdate(PatchModel):
    required_if_sent = frozenset({"opened_at", "client"})

    opened_at: UtcDatetime | None = None
    ip: IpAddress | None = None
    user_agent: Annotated[str, Field(max_length=512)] | None = None
    client: ClientKind | None = None

    _ip = field_validator("ip")(_valid_ip)


class OpeningOut(OutModel):
    id: Id
    pixel_id: Id
    contact_id: Id
    campaign_id: Id
    opened_at: UtcDatetime
    ip: str | None
    user_agent: str | None
    client: ClientKind
    reason: str = Field(
        description="Why the opening has its client class (docs/classification.md): e.g. `ua:crawler-pattern`, "
        "`ip:apple`, `method:HEAD`; `api:manual` when recorded or edited through the API; empty for rows "
        "stored before reasons existed (until `pixeltrack reclassify`).",
        examples=["ua:browser"],
    )
    event_id: str = Field(description="A tracking id, or the idempotency key given when recorded by hand.")

    _event_id = field_validator("event_id")(public_event_id)


HttpUrl2048 = Annotated[AnyHttpUrl, Field(examples=["https://shop.example.com/spring?utm_source=email"])]


def _url_length(value: AnyHttpUrl | None) -> AnyHttpUrl | None:
    if value is not None and len(str(value)) > 2048:
        raise ValueError("URL longer than 2048 characters")
    return value


Attribution = Annotated[
    StrictBool,
    Field(
        description="Its click redirect appends `pt=<attribution token>` to the URL, for the landing page to "
        "report conversions with (docs/conversions.md); never for contacts whose tracking is `off`."
    ),
]


class LinkCreate(InModel):
    url: HttpUrl2048
    name: Annotated[str, Field(max_length=200, examples=["Spring offers"])] | None = None
    attribution: Attribution | None = Field(
        default=None,
        description="Append `pt=<attribution token>` on click; default: the campaign's `attribution_default`.",
    )

    _len = field_validator("url")(_url_length)


class LinkUpdate(PatchModel):
    required_if_sent = frozenset({"url", "attribution"})

    url: HttpUrl2048 | None = None
    name: Annotated[str, Field(max_length=200)] | None = None
    attribution: Attribution | None = None

    _len = field_validator("url")(_url_length)


class LinkOut(OutModel):
    id: Id
    campaign_id: Id
    name: str | None
    url: str
    uuid: str
    trap: bool = Field(
        description="The campaign's hidden trap link (render's `trap_link`): its clicks are `scanner`, reason "
        "`trap:link`; not a column of the send sheet."
    )
    attribution: Attribution
    created_at: UtcDatetime


class TrackedUrlOut(OutModel):
    link_id: Id
    contact_id: Id
    url: str = Field(description="The tracked click URL to put in this contact's email.")
