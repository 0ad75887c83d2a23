"""conversions: outcomes attributed to an email (issue #15)

Campaigns get `attribution_default` (do new links carry an attribution token?) and
`conversion_origins` (the exact origins whose pages may post conversions, a JSON list); links get
`attribution`. `conversions` holds what a landing page or a backend reported, idempotent on
`event_id`, following its campaign, group and contact (ON DELETE CASCADE). Every row already
there keeps what it was: no attribution, no origins.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies (migrations must not change when app code does).
TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
ADDED = (("campaigns", "attribution_default"), ("campaigns", "conversion_origins"), ("links", "attribution"))

# SQLite: plain ALTER TABLE only (op.add_column); a batch copy of `campaigns` or `links` would
# drop the table and, with foreign keys on, delete everything below it.


def upgrade() -> None:
    op.add_column(
        "campaigns", sa.Column("attribution_default", sa.Boolean(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column(
        "campaigns", sa.Column("conversion_origins", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
    )
    op.add_column("links", sa.Column("attribution", sa.Boolean(), server_default=sa.text("0"), nullable=False))
    op.create_table(
        "conversions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("campaign_id", BIG_ID, nullable=False),
        sa.Column("group_id", BIG_ID, nullable=False),
        sa.Column("contact_id", BIG_ID, nullable=True),
        sa.Column("link_id", BIG_ID, nullable=True),
        sa.Column("click_event_id", sa.String(64), nullable=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Numeric(18, 4), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("order_id", sa.String(128), nullable=True),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("occurred_at", DATETIME, nullable=False),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_conversions_campaign_id_campaigns"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_conversions_group_id_groups"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_conversions_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversions")),
        sa.UniqueConstraint("event_id", name=op.f("uq_conversions_event_id")),
        sqlite_autoincrement=True,
        **TABLE_ARGS,
    )
    op.create_index(
        op.f("ix_conversions_campaign_id_group_id_contact_id"), "conversions", ["campaign_id", "group_id", "contact_id"]
    )
    op.create_index(op.f("ix_conversions_campaign_id_occurred_at"), "conversions", ["campaign_id", "occurred_at"])
    op.create_index(op.f("ix_conversions_group_id"), "conversions", ["group_id"])
    op.create_index(op.f("ix_conversions_contact_id"), "conversions", ["contact_id"])


def downgrade() -> None:
    op.drop_table("conversions")  # with its indexes
    if op.get_bind().dialect.name == "sqlite":
        for table, column in ADDED:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        return
    for table, column in ADDED:
        op.drop_column(table, column)
