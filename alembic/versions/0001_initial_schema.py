"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 22:33:47.243275
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from sqlalchemy.dialects import mysql

# Frozen copies of app.models.base types (migrations must not change when app code does).
# sqlite_autoincrement: SQLite never hands out the id of a deleted row again (as MySQL does);
# ids are in JWTs and tracking tokens, so a reused id would act for someone else.
DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("hashed_password", sa.String(length=255), nullable=False),
        sa.Column(
            "is_admin", sa.Boolean(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "is_active", sa.Boolean(), server_default=sa.text("1"), nullable=False
        ),
        sa.Column(
            "token_version", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    op.create_table(
        "campaigns",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("owner_id", BIGID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column("starts_at", DATETIME, nullable=True),
        sa.Column("ends_at", DATETIME, nullable=True),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.Column("updated_at", DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_campaigns_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_campaigns_owner_id_id"), "campaigns", ["owner_id", "id"], unique=False
    )
    op.create_table(
        "groups",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("campaign_id", BIGID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_groups_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint(
            "campaign_id", "name", name=op.f("uq_groups_campaign_id_name")
        ),
        sa.UniqueConstraint("id", "campaign_id", name=op.f("uq_groups_id_campaign_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    op.create_table(
        "links",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("campaign_id", BIGID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("uuid", sa.String(length=32), nullable=False),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_links_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
        sa.UniqueConstraint("uuid", name=op.f("uq_links_uuid")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_links_campaign_id"), "links", ["campaign_id"], unique=False
    )
    op.create_table(
        "contacts",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("campaign_id", BIGID, nullable=False),
        sa.Column("group_id", BIGID, nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("scheduled_at", DATETIME, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sent_at", DATETIME, nullable=True),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.Column("updated_at", DATETIME, nullable=False),
        sa.CheckConstraint(
            "status IN ('scheduled', 'sent', 'failed')", name=op.f("ck_contacts_status")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_contacts_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id", "campaign_id"],
            ["groups.id", "groups.campaign_id"],
            name=op.f("fk_contacts_group_id_campaign_id_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.UniqueConstraint(
            "campaign_id",
            "group_id",
            "email",
            name=op.f("uq_contacts_campaign_id_group_id_email"),
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_contacts_campaign_id_status"),
        "contacts",
        ["campaign_id", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_contacts_group_id_scheduled_at"),
        "contacts",
        ["group_id", "scheduled_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_contacts_group_id_status"),
        "contacts",
        ["group_id", "status"],
        unique=False,
    )
    op.create_table(
        "clicks",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("link_id", BIGID, nullable=False),
        sa.Column("contact_id", BIGID, nullable=False),
        sa.Column("campaign_id", BIGID, nullable=False),
        sa.Column("clicked_at", DATETIME, nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("client", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_clicks_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["links.id"],
            name=op.f("fk_clicks_link_id_links"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clicks")),
        sa.UniqueConstraint("event_id", name=op.f("uq_clicks_event_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_clicks_campaign_id_clicked_at"),
        "clicks",
        ["campaign_id", "clicked_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_clicks_campaign_id_contact_id"),
        "clicks",
        ["campaign_id", "contact_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_clicks_contact_id"), "clicks", ["contact_id"], unique=False
    )
    op.create_index(
        op.f("ix_clicks_link_id_clicked_at"),
        "clicks",
        ["link_id", "clicked_at"],
        unique=False,
    )
    op.create_table(
        "pixels",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("uuid", sa.String(length=32), nullable=False),
        sa.Column("contact_id", BIGID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_pixels_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pixels")),
        sa.UniqueConstraint(
            "contact_id", "number", name=op.f("uq_pixels_contact_id_number")
        ),
        sa.UniqueConstraint("uuid", name=op.f("uq_pixels_uuid")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    op.create_table(
        "openings",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("pixel_id", BIGID, nullable=False),
        sa.Column("contact_id", BIGID, nullable=False),
        sa.Column("campaign_id", BIGID, nullable=False),
        sa.Column("opened_at", DATETIME, nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("client", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["pixel_id"],
            ["pixels.id"],
            name=op.f("fk_openings_pixel_id_pixels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_openings")),
        sa.UniqueConstraint("event_id", name=op.f("uq_openings_event_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_openings_campaign_id_contact_id"),
        "openings",
        ["campaign_id", "contact_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_openings_campaign_id_opened_at"),
        "openings",
        ["campaign_id", "opened_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_openings_contact_id"), "openings", ["contact_id"], unique=False
    )
    op.create_index(
        op.f("ix_openings_pixel_id_opened_at"),
        "openings",
        ["pixel_id", "opened_at"],
        unique=False,
    )


def downgrade() -> None:
    # Children first. Dropping a table drops its indexes; dropping those indexes one by one
    # first fails on MySQL/MariaDB when an index backs a foreign key (error 1553).
    for table in ("openings", "pixels", "clicks", "contacts", "links", "groups", "campaigns", "users"):
        op.drop_table(table)
