"""The campaign tree: campaigns → groups (A/B arms) → scheduled contacts."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TABLE_ARGS, Base, BigId, utcnow


class ContactStatus(enum.StrEnum):
    scheduled = "scheduled"
    sent = "sent"
    failed = "failed"


class Tracking(enum.StrEnum):
    """A contact's tracking consent (docs/consent.md): what render inserts and what is recorded."""

    full = "full"  # opens and clicks recorded with IP and user agent
    anonymous = "anonymous"  # counted in aggregates; no IP/UA stored, never listed per contact
    off = "off"  # nothing inserted, nothing recorded (existing URLs still answer)


TRACKING_CHECK = "{} IN ('full', 'anonymous', 'off')"


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        Index(None, "owner_id", "id"),
        CheckConstraint(TRACKING_CHECK.format("tracking_default"), name="tracking_default"),
        TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    # The consent level of contacts created without one.
    tracking_default: Mapped[str] = mapped_column(
        String(16), default=Tracking.full.value, server_default=text("'full'")
    )
    # Outcomes (docs/conversions.md): whether new links carry an attribution token by default,
    # and the exact origins (scheme://host[:port]) whose pages may post its conversions.
    attribution_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("0"))
    conversion_origins: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (
        UniqueConstraint("campaign_id", "name"),
        # Target of the contacts' composite foreign key (group and campaign must agree).
        UniqueConstraint("id", "campaign_id"),
        TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("campaign_id", "group_id", "email"),
        ForeignKeyConstraint(["group_id", "campaign_id"], ["groups.id", "groups.campaign_id"], ondelete="CASCADE"),
        CheckConstraint("status IN ('scheduled', 'sent', 'failed')", name="status"),
        CheckConstraint(TRACKING_CHECK.format("tracking"), name="tracking"),
        Index(None, "group_id", "status"),
        Index(None, "group_id", "scheduled_at"),
        Index(None, "campaign_id", "status"),
        TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="CASCADE"))
    group_id: Mapped[int] = mapped_column(BigId)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    scheduled_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default=ContactStatus.scheduled.value)
    sent_at: Mapped[datetime | None]
    tracking: Mapped[str] = mapped_column(String(16), default=Tracking.full.value, server_default=text("'full'"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
