"""Reading events by `seq` costs a page, not the owner's history (app/webhooks/payload.in_seq_order).

MariaDB ran a dispatcher claim or a feed page (`owner_id = ? AND seq > ? AND seq <= ? ORDER BY
seq LIMIT n`, reading columns the index lacks) as a lookup on `owner_id` alone, walking every
earlier event of the owner to reach the range: the plan each statement gets is checked here on
a table of 20,000 events, where that happened."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text

from app.db import make_engine
from app.models import EventType
from app.services import events
from app.webhooks.batches import next_batch
from tests.support.private_db import campaign_with_groups, explain

EVENTS = 20_000
AFTER = 5_000  # a webhook or a reader catching up: the range is wide, the page is not


@pytest.mark.mysql_only
def test_claims_and_feed_pages_read_a_range_of_seq_not_the_owners_history(private_url: str) -> None:
    engine = make_engine(private_url)
    owner, campaign_id, (group_id,) = campaign_with_groups(engine, 1)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO events (seq, event_id, type, owner_id, campaign_id, group_id, client, reason,"
                " occurred_at, created_at) SELECT seq, CONCAT('ev-', seq), 'open', :owner, :campaign, :group,"
                " 'browser', '', NOW(), NOW() FROM seq_1_to_20000"  # MariaDB's Sequence engine: 1..EVENTS
            ),
            {"owner": owner, "campaign": campaign_id, "group": group_id},
        )
        conn.execute(text("ANALYZE TABLE events"))

    def webhook(campaign: int | None) -> Any:
        return SimpleNamespace(
            owner_id=owner, campaign_id=campaign, events="open,click", include_machine=False, cursor_seq=AFTER
        )

    def claim(campaign: int | None) -> Any:
        stmt, params = next_batch(webhook(campaign), EVENTS, 100)
        return stmt.params(**params)

    statements = {
        "claim": (claim(None), "ix_events_owner_id_seq"),
        "claim, one campaign": (claim(campaign_id), "ix_events_campaign_id_seq"),
        "feed": (events.page(owner, None, [], AFTER, EVENTS, 100), "ix_events_owner_id_seq"),
        "feed, one campaign": (
            events.page(owner, campaign_id, [EventType.open], AFTER, EVENTS, 100),
            "ix_events_campaign_id_seq",
        ),
        "feed, everyone's": (events.page(None, None, [], AFTER, EVENTS, 100), "uq_events_seq"),
    }
    with engine.connect() as conn:
        plans = {name: explain(conn, stmt, "events") for name, (stmt, _) in statements.items()}
    engine.dispose()
    for name, (_, index) in statements.items():
        assert (plans[name].type, plans[name].key) == ("range", index), name
