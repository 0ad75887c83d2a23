"""webhooks: the event feed / outbox, webhooks, their batches and the deliveries log (issue #14)

`events` is the feed and the transactional outbox in one: the ingest writes one row per stored
opening/click in the same transaction (app/webhooks/outbox.py). `seq` is assigned after commit,
in commit order, by the sequencer (one locked row of `event_sequence`): the feed and every
webhook read by `seq`, so an event whose transaction commits late is never skipped. Rows follow
their contact and campaign (ON DELETE CASCADE): erasure reaches them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies (migrations must not change when app code does).
TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _fk(table: str, column: str, target: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("owner_id", BIG_ID, nullable=False),
        sa.Column("campaign_id", BIG_ID, nullable=False),
        sa.Column("group_id", BIG_ID, nullable=False),
        sa.Column("contact_id", BIG_ID, nullable=True),
        sa.Column("target_id", BIG_ID, nullable=True),
        sa.Column("client", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(48), nullable=False),
        sa.Column("occurred_at", DATETIME, nullable=False),
        sa.Column("created_at", DATETIME, nullable=False),
        _fk("events", "owner_id", "users"),
        _fk("events", "campaign_id", "campaigns"),
        _fk("events", "contact_id", "contacts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
        sa.UniqueConstraint("seq", name=op.f("uq_events_seq")),
        sqlite_autoincrement=True,
        **TABLE_ARGS,
    )
    op.create_index(op.f("ix_events_owner_id_seq"), "events", ["owner_id", "seq"])
    op.create_index(op.f("ix_events_campaign_id_seq"), "events", ["campaign_id", "seq"])
    op.create_index(op.f("ix_events_contact_id"), "events", ["contact_id"])
    op.create_index(op.f("ix_events_created_at"), "events", ["created_at"])
    op.create_table(
        "event_sequence",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_sequence")),
        **TABLE_ARGS,
    )
    op.create_table(
        "webhooks",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("owner_id", BIG_ID, nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.String(64), nullable=False),
        sa.Column("campaign_id", BIG_ID, nullable=True),
        sa.Column("include_machine", sa.Boolean(), nullable=False),
        sa.Column("description", sa.String(2000), nullable=True),
        sa.Column("secret", sa.String(255), nullable=False),
        sa.Column("old_secret", sa.String(255), nullable=True),
        sa.Column("old_secret_until", DATETIME, nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(200), nullable=True),
        sa.Column("cursor_seq", sa.BigInteger(), nullable=False),
        sa.Column("failing_since", DATETIME, nullable=True),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.Column("updated_at", DATETIME, nullable=False),
        _fk("webhooks", "owner_id", "users"),
        _fk("webhooks", "campaign_id", "campaigns"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
        sqlite_autoincrement=True,
        **TABLE_ARGS,
    )
    op.create_index(op.f("ix_webhooks_owner_id"), "webhooks", ["owner_id"])
    op.create_table(
        "webhook_batches",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("webhook_id", BIG_ID, nullable=False),
        sa.Column("msg_id", sa.String(40), nullable=False),
        sa.Column("event_ids", sa.Text(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", DATETIME, nullable=False),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.Column("finished_at", DATETIME, nullable=True),
        _fk("webhook_batches", "webhook_id", "webhooks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_batches")),
        sa.UniqueConstraint("msg_id", name=op.f("uq_webhook_batches_msg_id")),
        sqlite_autoincrement=True,
        **TABLE_ARGS,
    )
    op.create_index(op.f("ix_webhook_batches_webhook_id_status"), "webhook_batches", ["webhook_id", "status"])
    op.create_index(op.f("ix_webhook_batches_created_at"), "webhook_batches", ["created_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("webhook_id", BIG_ID, nullable=False),
        sa.Column("batch_id", BIG_ID, nullable=True),
        sa.Column("msg_id", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempted_at", DATETIME, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        _fk("webhook_deliveries", "webhook_id", "webhooks"),
        _fk("webhook_deliveries", "batch_id", "webhook_batches", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sqlite_autoincrement=True,
        **TABLE_ARGS,
    )
    op.create_index(
        op.f("ix_webhook_deliveries_webhook_id_attempted_at"), "webhook_deliveries", ["webhook_id", "attempted_at"]
    )
    op.create_index(op.f("ix_webhook_deliveries_batch_id"), "webhook_deliveries", ["batch_id"])


def downgrade() -> None:
    for table in ("webhook_deliveries", "webhook_batches", "webhooks", "event_sequence", "events"):
        op.drop_table(table)  # with its indexes
