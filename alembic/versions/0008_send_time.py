"""send time: tracking consent, the trap link flag, API keys (issue #13)

Contacts get `tracking` (full | anonymous | off: what render inserts and what is recorded, see
docs/consent.md) and campaigns `tracking_default` for contacts created without one; every row
already there is `full`, which is what it was. Links get `trap` (the campaign's hidden trap link,
whose clicks are scanners). `api_keys` holds the hashed long-lived keys of campaign tools.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies (migrations must not change when app code does).
TRACKING_CHECK = "{} IN ('full', 'anonymous', 'off')"
TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


# (table, column) of the consent columns.
CONSENT = (("campaigns", "tracking_default"), ("contacts", "tracking"))


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


# SQLite: plain ALTER TABLE only. A batch (copy and move) of `contacts` would drop the table,
# and with foreign keys on that deletes every pixel, opening and click below it.


def upgrade() -> None:
    for table, column in CONSENT:
        check = TRACKING_CHECK.format(column)
        if _sqlite():
            op.execute(
                f"ALTER TABLE {table} ADD COLUMN {column} VARCHAR(16) NOT NULL DEFAULT 'full' "
                f"CONSTRAINT ck_{table}_{column} CHECK ({check})"
            )
        else:
            op.add_column(table, sa.Column(column, sa.String(16), server_default=sa.text("'full'"), nullable=False))
            op.create_check_constraint(column, table, check)
    op.add_column("links", sa.Column("trap", sa.Boolean(), server_default=sa.text("0"), nullable=False))
    op.create_table(
        "api_keys",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("owner_id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.Column("last_used_at", DATETIME, nullable=True),
        sa.Column("expires_at", DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_api_keys_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sqlite_autoincrement=True,
        **TABLE_ARGS,
    )
    op.create_index(op.f("ix_api_keys_owner_id"), "api_keys", ["owner_id"])


def downgrade() -> None:
    op.drop_table("api_keys")  # with its index
    if _sqlite():
        for table, column in (*CONSENT, ("links", "trap")):
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        return
    op.drop_column("links", "trap")
    for table, column in CONSENT:
        op.drop_constraint(op.f(f"ck_{table}_{column}"), table, type_="check")
        op.drop_column(table, column)
