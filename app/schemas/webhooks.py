"""Webhooks, their delivery log, and the event feed (docs/webhooks.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AnyHttpUrl, ConfigDict, Field, field_validator

from app.models import EventType
from app.schemas.common import Id, InModel, OutModel, PatchModel, UtcDatetime

WebhookUrl = Annotated[AnyHttpUrl, Field(examples=["https://crm.example.com/hooks/pixeltracking"])]
EventTypes = Annotated[
    list[EventType], Field(min_length=1, max_length=3, examples=[["open", "click"]], description="Event types sent.")
]
Description = Annotated[str, Field(max_length=2000, examples=["Stop the follow-up when they click"])]


def _url_length(value: AnyHttpUrl | None) -> AnyHttpUrl | None:
    if value is not None and len(str(value)) > 2048:
        raise ValueError("URL longer than 2048 characters")
    return value


def _distinct(value: list[EventType] | None) -> list[EventType] | None:
    return None if value is None else sorted(set(value), key=list(EventType).index)


class WebhookCreate(InModel):
    url: WebhookUrl
    events: EventTypes = Field(default_factory=lambda: [EventType.open, EventType.click, EventType.conversion])
    campaign_id: Id | None = Field(default=None, description="Only this campaign's events (default: all yours).")
    include_machine: bool = Field(
        default=False, description="Also send events of machines (proxies, scanners, bots: `machine` true)."
    )
    description: Description | None = None

    _len = field_validator("url")(_url_length)
    _events = field_validator("events")(_distinct)


class WebhookUpdate(PatchModel):
    required_if_sent = frozenset({"url", "events", "include_machine", "enabled", "rotate_secret"})

    url: WebhookUrl | None = None
    events: EventTypes | None = None
    campaign_id: Id | None = None
    include_machine: bool | None = None
    description: Description | None = None
    enabled: bool | None = Field(default=None, description="Re-enable (or pause) the webhook.")
    rotate_secret: bool | None = Field(
        default=None,
        description="true: a new secret is made (answered once); the old one keeps signing beside it for 24 h.",
    )

    _len = field_validator("url")(_url_length)
    _events = field_validator("events")(_distinct)


class WebhookOut(OutModel):
    id: Id
    url: str
    events: list[EventType]
    campaign_id: Id | None
    include_machine: bool
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="Why the webhook was disabled (410 Gone, days of failures).")
    old_secret_until: UtcDatetime | None = Field(description="Until when the previous secret also signs.")
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @field_validator("events", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return value.split(",") if isinstance(value, str) else value


class WebhookSecretOut(WebhookOut):
    secret: str | None = Field(
        description="The signing secret (`whsec_…`): shown here once, at creation or rotation; null otherwise.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class DeliveryOut(OutModel):
    id: Id
    msg_id: str = Field(description="The `webhook-id` header (the same for every attempt of a batch).")
    attempt: int
    attempted_at: UtcDatetime
    status_code: int | None = Field(description="The receiver's HTTP status; null when none came (see `error`).")
    duration_ms: int
    error: str | None = Field(examples=["timeout after 10 s"])
    event_count: int
    outcome: Literal["delivered", "retry", "failed", "gone", "ping"]


class PingOut(OutModel):
    ok: bool = Field(description="The receiver answered 2xx.")
    status_code: int | None
    duration_ms: int
    error: str | None


class ReplayOut(OutModel):
    since: UtcDatetime
    events: int = Field(description="Events stored since then that match the webhook (sent again, in new batches).")


class EventOut(OutModel):
    """One event. Fields a consent level or a type does not carry are absent (docs/webhooks.md)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "0f4c2a6e9b1d4e3f8a7b6c5d4e3f2a1b",
                "type": "click",
                "occurred_at": "2026-05-01T09:00:00.123456Z",
                "campaign_id": 1,
                "group_id": 2,
                "contact_id": 3,
                "email": "ana@example.com",
                "link_id": 4,
                "url": "https://shop.example.com/spring",
                "client": "browser",
                "machine": False,
                "reason": "ua:browser",
            }
        }
    )

    id: str = Field(description="Stable and unique: receivers dedupe by it.")
    type: EventType
    occurred_at: str = Field(json_schema_extra={"format": "date-time"})
    campaign_id: Id
    group_id: Id
    contact_id: Id | None = Field(
        default=None,
        description="A `full` contact's id; absent otherwise, except on a conversion, where it is null when "
        "the conversion names no one (an anonymous contact's).",
    )
    email: str | None = None
    pixel_id: Id | None = None
    link_id: Id | None = Field(
        default=None, description="click: the link; conversion: the link whose click carried the token (or null)."
    )
    url: str | None = None
    client: str | None = None
    machine: bool | None = Field(default=None, description="true: a machine; false: a person; null: unknown.")
    reason: str | None = None
    name: str | None = Field(default=None, description="conversion only: its name (`purchase`, `signup`...).")
    value: str | None = Field(
        default=None,
        description='conversion only: its value as a decimal string with 4 decimals ("42.5000"), never a float; '
        "null without a value.",
        examples=["42.5000"],
    )
    currency: str | None = Field(default=None, description="conversion only: ISO 4217, with a value; else null.")
    order_id: str | None = Field(
        default=None, description="conversion only: the `id` it was reported with (its order id); else null."
    )
    source: Literal["browser", "api"] | None = Field(
        default=None, description="conversion only: `browser` (POST /e, GET /e.gif) or `api` (POST /conversions)."
    )


class FeedOut(OutModel):
    items: list[EventOut]
    next: str = Field(description="Cursor to pass as `after` next time (also at the end: poll with it).")
