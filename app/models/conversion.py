"""Outcomes (issue #15, docs/conversions.md): a conversion attributed to an email.

A conversion belongs to a campaign and a group (the A/B arm), and to a contact unless it came
through an `anonymous` contact's token (it then names no one and counts in aggregates only).
`event_id` is the idempotency key (app/tracking/events.conversion_key): the same order id posted
twice for one contact, from the landing page or the backend, is stored once; a post without an
id gets a fresh random key (each post counts once). The values are decimals, never floats.
Rows follow their campaign, group and contact (ON DELETE CASCADE).
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TABLE_ARGS, Base, BigId, utcnow

NAME_MAX = 64
ORDER_ID_MAX = 128
VALUE_DIGITS, VALUE_SCALE = 18, 4  # up to 99,999,999,999,999.9999


class ConversionSource(enum.StrEnum):
    browser = "browser"  # POST /e, GET /e.gif (a landing page, with the click's token)
    api = "api"  # POST /api/v1/conversions (a backend, with a token or a contact id)


class Conversion(Base):
    __tablename__ = "conversions"
    __table_args__ = (
        Index(None, "campaign_id", "group_id", "contact_id"),  # stats: per group, unique converters
        Index(None, "campaign_id", "occurred_at"),  # the series, the CSV
        TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)  # the idempotency key
    campaign_id: Mapped[int] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="CASCADE"))
    group_id: Mapped[int] = mapped_column(BigId, ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    # NULL: an `anonymous` contact's conversion (it names no one).
    contact_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    link_id: Mapped[int | None] = mapped_column(BigId)  # the link whose click carried the token
    click_event_id: Mapped[str | None] = mapped_column(String(64))  # that click's event id
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    value: Mapped[Decimal | None] = mapped_column(Numeric(VALUE_DIGITS, VALUE_SCALE, asdecimal=True))
    currency: Mapped[str | None] = mapped_column(String(3))  # ISO 4217, with a value
    order_id: Mapped[str | None] = mapped_column(String(ORDER_ID_MAX))  # the client's `id`
    source: Mapped[str] = mapped_column(String(8))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
