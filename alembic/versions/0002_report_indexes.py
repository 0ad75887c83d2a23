"""report indexes: covering indexes for the campaign stats

The stats of a campaign aggregate its openings per (contact, client) and take the first
opening of each contact. On 1,000,000 openings the former index (campaign_id, contact_id)
made both read every row from the table (a primary-key lookup per opening: ~24 s on MariaDB);
these two indexes answer them from the index alone, and the second lets MariaDB find each
contact's first opening with one index dive ("Using index for group-by"). They replace
(campaign_id, contact_id), which is a prefix of both.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_openings_campaign_id_contact_id_client"),
        "openings",
        ["campaign_id", "contact_id", "client"],
        unique=False,
    )
    op.create_index(
        op.f("ix_openings_campaign_id_contact_id_opened_at"),
        "openings",
        ["campaign_id", "contact_id", "opened_at"],
        unique=False,
    )
    op.drop_index(op.f("ix_openings_campaign_id_contact_id"), table_name="openings")


def downgrade() -> None:
    op.create_index(
        op.f("ix_openings_campaign_id_contact_id"),
        "openings",
        ["campaign_id", "contact_id"],
        unique=False,
    )
    op.drop_index(op.f("ix_openings_campaign_id_contact_id_opened_at"), table_name="openings")
    op.drop_index(op.f("ix_openings_campaign_id_contact_id_client"), table_name="openings")
