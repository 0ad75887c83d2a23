"""What the public endpoints record: pixels and their openings, links and their clicks.

`openings` and `clicks` carry the contact and campaign ids of their pixel/link
(denormalised, set on insert) so that reports aggregate on one indexed table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import InstrumentedAttribute, Mapped, mapped_column

from app.models.base import TABLE_ARGS, Base, BigId, utcnow


class ClientKind(enum.StrEnum):
    apple_mpp = "apple_mpp"
    gmail_proxy = "gmail_proxy"
    outlook_proxy = "outlook_proxy"
    yahoo_proxy = "yahoo_proxy"
    other_proxy = "other_proxy"  # other providers' image proxies (Seznam, Rambler, ukr.net, Fastmail, ...)
    scanner = "scanner"  # link scanners and security gateways
    bot = "bot"
    browser = "browser"
    unknown = "unknown"


MACHINE_CLIENTS = frozenset(
    {
        ClientKind.apple_mpp,
        ClientKind.gmail_proxy,
        ClientKind.outlook_proxy,
        ClientKind.yahoo_proxy,
        ClientKind.other_proxy,
        ClientKind.scanner,
        ClientKind.bot,
    }
)
REASON_MAX = 48  # the `reason` column: why an event got its class (app/tracking/classify.py)


# Pixel numbers (rendering slots of one contact) run from 1 to this.
MAX_PIXEL_NUMBER = 1000


class Pixel(Base):
    __tablename__ = "pixels"
    __table_args__ = (UniqueConstraint("contact_id", "number"), TABLE_ARGS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(32), unique=True)
    contact_id: Mapped[int] = mapped_column(BigId, ForeignKey("contacts.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Opening(Base):
    __tablename__ = "openings"
    __table_args__ = (
        Index(None, "pixel_id", "opened_at"),
        Index(None, "campaign_id", "opened_at"),
        Index(None, "contact_id"),
        TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    pixel_id: Mapped[int] = mapped_column(BigId, ForeignKey("pixels.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigId)
    campaign_id: Mapped[int] = mapped_column(BigId)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    client: Mapped[str] = mapped_column(String(16), default=ClientKind.unknown.value)
    reason: Mapped[str] = mapped_column(String(REASON_MAX), default="", server_default=text("''"))
    event_id: Mapped[str] = mapped_column(String(64), unique=True)


class Link(Base):
    __tablename__ = "links"
    __table_args__ = (TABLE_ARGS,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2048))
    uuid: Mapped[str] = mapped_column(String(32), unique=True)
    # The campaign's hidden trap link (render's `trap_link`): only machines follow it, so its
    # clicks are `scanner` (reason `trap:link`).
    trap: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("0"))
    # Its click redirect appends `pt=<attribution token>` (docs/conversions.md).
    attribution: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Click(Base):
    __tablename__ = "clicks"
    __table_args__ = (
        Index(None, "link_id", "clicked_at"),
        Index(None, "campaign_id", "clicked_at"),
        Index(None, "campaign_id", "contact_id"),
        TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    link_id: Mapped[int] = mapped_column(BigId, ForeignKey("links.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigId, ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int] = mapped_column(BigId)
    clicked_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    client: Mapped[str] = mapped_column(String(16), default=ClientKind.unknown.value)
    reason: Mapped[str] = mapped_column(String(REASON_MAX), default="", server_default=text("''"))
    event_id: Mapped[str] = mapped_column(String(64), unique=True)


@dataclass(frozen=True)
class EventTable:
    """What openings and clicks have in common, for the code that treats both alike (the ingest,
    the CSV exports, the retention purge): the table, its time and target columns, and the kind
    of event it stores (the `kind` label of the ingest metrics)."""

    kind: str
    model: type[Opening] | type[Click]
    time: InstrumentedAttribute[datetime]  # opened_at / clicked_at
    target: InstrumentedAttribute[int]  # pixel_id / link_id


OPENINGS = EventTable("open", Opening, Opening.opened_at, Opening.pixel_id)
CLICKS = EventTable("click", Click, Click.clicked_at, Click.link_id)
EVENT_TABLES = (OPENINGS, CLICKS)
