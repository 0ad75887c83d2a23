"""client classes other_proxy and scanner, and the reason of each event's class

Openings and clicks get a `reason` next to `client` (why the event got its class, e.g.
`ua:crawler-pattern`, `ip:apple`, `method:HEAD`); rows stored before keep "" until
`pixeltrack reclassify` re-derives them. The report counters get a column per new class
(`opens_other_proxy`, `opens_scanner`), 0 until rows are reclassified into them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies (migrations must not change when app code does).
REASON_MAX = 48
EVENT_TABLES = ("openings", "clicks")
COUNTER_TABLES = ("contact_stats", "group_counts")
NEW_COUNTERS = ("opens_other_proxy", "opens_scanner")


def upgrade() -> None:
    for table in EVENT_TABLES:
        op.add_column(table, sa.Column("reason", sa.String(REASON_MAX), server_default=sa.text("''"), nullable=False))
    for table in COUNTER_TABLES:
        for name in NEW_COUNTERS:
            op.add_column(table, sa.Column(name, sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    # Rows of the new classes count as `bot` again, so that no opening leaves the counters.
    for table in COUNTER_TABLES:
        op.execute(f"UPDATE {table} SET opens_bot = opens_bot + {' + '.join(NEW_COUNTERS)}")
        with op.batch_alter_table(table) as batch:
            for name in NEW_COUNTERS:
                batch.drop_column(name)
    for table in EVENT_TABLES:
        op.execute(f"UPDATE {table} SET client = 'bot' WHERE client IN ('other_proxy', 'scanner')")
        with op.batch_alter_table(table) as batch:
            batch.drop_column("reason")
