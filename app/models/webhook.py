"""Events out (docs/webhooks.md): the event feed / outbox, webhooks, their batches and the log.

`Event` is written by the ingest in the same transaction as the opening/click it describes
(app/webhooks/outbox.py), so an event exists for delivery iff its row exists. `seq` is its commit
order, taken as it is written under the `event_sequence` lock held to the commit
(app/webhooks/sequence.py): the feed and the webhooks read by `seq`. Rows follow their contact
and campaign (ON DELETE CASCADE).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TABLE_ARGS, Base, BigId, utcnow
from app.models.tracking import REASON_MAX


class EventType(enum.StrEnum):
    open = "open"
    click = "click"
    conversion = "conversion"  # a stored conversion (docs/conversions.md)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index(None, "owner_id", "seq"),
        Index(None, "campaign_id", "seq"),
        Index(None, "created_at"),
        TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Commit order (NULL only for a row written by a worker from before sequence.reserve, until
    # the sequencer has seen it committed).
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)  # the opening's/click's: the public id
    type: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="CASCADE"))
    group_id: Mapped[int] = mapped_column(BigId)
    # NULL for an `anonymous` contact: its events name no one.
    contact_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[int | None] = mapped_column(BigId)  # pixel id (open) or link id (click)
    client: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(REASON_MAX))
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventSequence(Base):
    """One row (id 1): the last `seq` handed out; locked by a writer of events until it commits."""

    __tablename__ = "event_sequence"
    __table_args__ = (TABLE_ARGS,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class Webhook(Base):
    __tablename__ = "webhooks"
    __table_args__ = (TABLE_ARGS,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[str] = mapped_column(String(64))  # comma-separated EventType values
    campaign_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="CASCADE"))
    include_machine: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(String(2000))
    # Signing secrets, encrypted with the Fernet key (app/webhooks/secrets.py).
    secret: Mapped[str] = mapped_column(String(255))
    old_secret: Mapped[str | None] = mapped_column(String(255))
    old_secret_until: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    cursor_seq: Mapped[int] = mapped_column(BigInteger, default=0)  # events up to here are batched
    failing_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BatchStatus(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class WebhookBatch(Base):
    """The outbox of one webhook: a batch of events, one `webhook-id`, retried until done."""

    __tablename__ = "webhook_batches"
    __table_args__ = (Index(None, "webhook_id", "status"), Index(None, "created_at"), TABLE_ARGS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(BigId, ForeignKey("webhooks.id", ondelete="CASCADE"))
    msg_id: Mapped[str] = mapped_column(String(40), unique=True)
    # `events.id`s (JSON list), no payload: an erased contact's events drop out of the retries.
    event_ids: Mapped[str] = mapped_column(Text)
    event_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.pending.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One delivery attempt (kept WEBHOOK_LOG_DAYS): no payload, only what happened."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index(None, "webhook_id", "attempted_at"), TABLE_ARGS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(BigId, ForeignKey("webhooks.id", ondelete="CASCADE"))
    batch_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("webhook_batches.id", ondelete="SET NULL"), index=True
    )
    msg_id: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    event_count: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | retry | failed | gone | ping
