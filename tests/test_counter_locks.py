"""The ingest's counters lock the batch's contacts, not the campaign's (app/services/counters/events.py).

Each batch reads its contacts' group sums with a locking read before and after it moves them.
MariaDB ran that read (`campaign_id = ? AND contact_id IN (…) GROUP BY campaign_id, group_id`)
through the (campaign, group, …) index, for the GROUP BY: it scanned, and locked, every contact
of the campaign, so two batches of one campaign never ran at once and each cost more the larger
the campaign. Checked on a campaign of 20,000 contacts: the read goes by primary key, and a
batch of other contacts (in another group) is not held up by it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.db import make_engine
from app.services.counters import events
from app.services.counters.groups import group_sums, group_sums_query
from tests.support.private_db import campaign_with_groups, explain

CONTACTS = 20_000


@pytest.mark.mysql_only
def test_a_batch_reads_and_locks_its_own_contacts_not_the_whole_campaign(private_url: str) -> None:
    engine = make_engine(private_url)
    _, campaign_id, (first_id, second_id) = campaign_with_groups(engine, 2)
    with engine.begin() as conn:
        # The statistics of a campaign that grew after they were taken (as an import does before
        # the server's background recount): MariaDB's choice of index then followed the GROUP BY.
        conn.execute(text("ALTER TABLE contact_stats STATS_AUTO_RECALC = 0"))
        conn.execute(text("ANALYZE TABLE contact_stats"))
        for group_id, size in ((first_id, CONTACTS - 1000), (second_id, 1000)):
            conn.execute(
                text(
                    "INSERT INTO contacts (campaign_id, group_id, email, status, created_at, updated_at)"
                    " SELECT :campaign, :group, CONCAT('c', seq, '-', :group, '@example.com'), 'sent', NOW(), NOW()"
                    " FROM seq_1_to_20000 WHERE seq <= :size"  # MariaDB's Sequence engine
                ),
                {"campaign": campaign_id, "group": group_id, "size": size},
            )
        conn.execute(
            text(
                "INSERT INTO contact_stats (campaign_id, contact_id, group_id, sent)"
                " SELECT campaign_id, id, group_id, 1 FROM contacts WHERE campaign_id = :campaign"
            ),
            {"campaign": campaign_id},
        )
        ids = {
            group_id: list(
                conn.scalars(
                    text("SELECT id FROM contacts WHERE group_id = :group ORDER BY id LIMIT 100"), {"group": group_id}
                )
            )
            for group_id in (first_id, second_id)
        }
    batch = {group_id: events.contact_keys({campaign_id: set(ids[group_id])}) for group_id in ids}
    with engine.connect() as conn:
        plan = explain(
            conn, group_sums_query(batch[first_id], index=events.BY_CONTACT).with_for_update(), "contact_stats"
        )
    assert (plan.type, plan.key) == ("range", "PRIMARY")
    assert int(plan.rows) <= 100, f"{plan.rows} rows read for a batch of 100 contacts"

    with engine.connect() as holder, engine.connect() as other:
        holder.begin()
        held = group_sums(holder, batch[first_id], index=events.BY_CONTACT)  # locked until it ends
        assert held[(campaign_id, first_id)]["contacts"] == 100
        other.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
        other.commit()
        # Scanning the campaign would wait for the holder's rows, and time out after a second.
        sums = group_sums(other, batch[second_id], index=events.BY_CONTACT)
        assert sums == {(campaign_id, second_id): {**sums[(campaign_id, second_id)], "contacts": 100, "sent": 100}}
        other.rollback()
        holder.rollback()
    engine.dispose()
