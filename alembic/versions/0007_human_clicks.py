"""report counters of human and machine clicks, and of human openers (issue #12, reports)

The stats separate what a person did from what a machine did: clicks by a `browser` client
(`human_clicks`) and by a machine class (`machine_clicks`: scanners, bots, proxies) per contact;
per group their sums and the contacts that opened as a person (`human_openers`: a `browser`
opening or a human click, since a click implies an open), of those the ones known only by their
click (`inferred_openers`), and the contacts with a human click (`human_clickers`). The rows
already there are filled from their clicks (the same values app.services.counters.rebuild gives).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies (migrations must not change when app code does).
HUMAN = "browser"
MACHINE = ("apple_mpp", "bot", "gmail_proxy", "other_proxy", "outlook_proxy", "scanner", "yahoo_proxy")
CONTACT_COUNTERS = ("human_clicks", "machine_clicks")
# group_counts column ← its aggregate over the group's contact_stats rows.
GROUP_SUMS = {
    "human_clicks": "COALESCE(SUM(s.human_clicks), 0)",
    "machine_clicks": "COALESCE(SUM(s.machine_clicks), 0)",
    "human_openers": "COUNT(CASE WHEN s.opens_browser > 0 OR s.human_clicks > 0 THEN 1 END)",
    "inferred_openers": "COUNT(CASE WHEN s.human_clicks > 0 AND s.opens_browser = 0 THEN 1 END)",
    "human_clickers": "COUNT(CASE WHEN s.human_clicks > 0 THEN 1 END)",
}


def _counter(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def upgrade() -> None:
    for name in CONTACT_COUNTERS:
        op.add_column("contact_stats", _counter(name))
    for name in GROUP_SUMS:
        op.add_column("group_counts", _counter(name))
    _backfill()


def _backfill() -> None:
    """Correlated subqueries (the same SQL on SQLite and MariaDB), on the contacts with clicks
    (clicks is indexed by contact) and then on every group row."""
    machine = ", ".join(f"'{client}'" for client in MACHINE)
    clicks = "SELECT COUNT(*) FROM clicks k WHERE k.contact_id = contact_stats.contact_id AND k.client"
    op.execute(
        f"UPDATE contact_stats SET human_clicks = ({clicks} = '{HUMAN}'), "
        f"machine_clicks = ({clicks} IN ({machine})) WHERE clicks > 0"
    )
    same_group = "s.campaign_id = group_counts.campaign_id AND s.group_id = group_counts.group_id"
    op.execute(
        "UPDATE group_counts SET "
        + ", ".join(
            f"{name} = (SELECT {sum_} FROM contact_stats s WHERE {same_group})" for name, sum_ in GROUP_SUMS.items()
        )
    )


def downgrade() -> None:
    for table, names in (("group_counts", tuple(GROUP_SUMS)), ("contact_stats", CONTACT_COUNTERS)):
        with op.batch_alter_table(table) as batch:
            for name in names:
                batch.drop_column(name)
