"""Storing conversions (docs/conversions.md): one function for every path that records them,
the tracking ingest (POST /e, GET /e.gif through the queue) and the backend API
(POST /api/v1/conversions, in its request transaction).

`store` applies the consent rules (SPEC §8) on the contacts' latest committed state (locking
reads, as the ingest's: a withdrawal either waits for this transaction or is seen by it):
- a contact deleted meanwhile, or whose tracking is `off`: nothing is stored;
- an `anonymous` contact: stored without its contact id nor its click's (aggregates only);
- a token of an anonymous contact (contact 0): its group must still be the campaign's.
With an order id the row's `event_id` is the idempotency key (app/tracking/events.conversion_key,
computed here, after consent: an anonymous contact's key names no contact); without one the
caller's random id is kept (a replayed queue entry is still stored once). INSERT IGNORE, and the
feed/webhooks outbox row in the same transaction (app/webhooks/outbox.record_conversions).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Connection, Insert, insert, select

from app.models import Campaign, Contact, Conversion, Group, Tracking
from app.tracking.events import conversion_key
from app.webhooks import outbox

CHUNK = 1000


class ConversionIn(NamedTuple):
    """A conversion as reported, before the consent rules (contact_id 0: an anonymous token)."""

    event_id: str  # random ("v" + new_event_id()), used when there is no order id
    campaign_id: int
    group_id: int
    contact_id: int
    name: str
    value: Decimal | None
    currency: str | None
    order_id: str | None
    source: str  # ConversionSource value
    occurred_at: datetime
    link_id: int | None = None
    click_event_id: str | None = None


def _ignore(stmt: Insert) -> Insert:
    return stmt.prefix_with("IGNORE", dialect="mysql").prefix_with("OR IGNORE", dialect="sqlite")


def _locked(conn: Connection, query: Any, ids: list[int]) -> dict[int, tuple[Any, ...]]:
    found: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(ids), CHUNK):
        for row in conn.execute(query(ids[start : start + CHUNK]).with_for_update(read=True)):
            found[row[0]] = tuple(row[1:])
    return found


def store(conn: Connection, conversions: Sequence[ConversionIn], *, now: datetime) -> int:
    """Store what the consent rules allow; returns how many rows are new (not stored before)."""
    if not conversions:
        return 0
    contacts = _locked(
        conn,
        lambda ids: (
            select(Contact.id, Contact.campaign_id, Contact.group_id, Contact.tracking, Campaign.owner_id)
            .join(Campaign, Campaign.id == Contact.campaign_id)
            .where(Contact.id.in_(ids))
        ),
        sorted({c.contact_id for c in conversions if c.contact_id}),
    )
    groups = _locked(
        conn,
        lambda ids: (
            select(Group.id, Group.campaign_id, Campaign.owner_id)
            .join(Campaign, Campaign.id == Group.campaign_id)
            .where(Group.id.in_(ids))
        ),
        sorted({c.group_id for c in conversions if not c.contact_id}),
    )
    rows: dict[str, dict[str, Any]] = {}
    owners: dict[str, int] = {}
    for c in conversions:
        if c.contact_id:
            found = contacts.get(c.contact_id)
            if found is None or found[0] != c.campaign_id or found[2] == Tracking.off:
                continue
            _campaign, group_id, tracking, owner_id = found
            contact_id = c.contact_id if tracking == Tracking.full else None
        else:
            found = groups.get(c.group_id)
            if found is None or found[0] != c.campaign_id:
                continue
            group_id, contact_id, owner_id = c.group_id, None, found[1]
        event_id = conversion_key(c.campaign_id, contact_id, c.order_id) if c.order_id is not None else c.event_id
        if event_id in rows:
            continue  # the same order twice in one batch
        owners[event_id] = owner_id
        rows[event_id] = {
            "event_id": event_id,
            "campaign_id": c.campaign_id,
            "group_id": group_id,
            "contact_id": contact_id,
            "link_id": c.link_id,
            "click_event_id": c.click_event_id if contact_id is not None else None,  # a click names its contact
            "name": c.name,
            "value": c.value,
            "currency": c.currency,
            "order_id": c.order_id,
            "source": c.source,
            "occurred_at": c.occurred_at,
            "created_at": now,
        }
    values = list(rows.values())
    inserted = 0
    for start in range(0, len(values), CHUNK):
        result = conn.execute(_ignore(insert(Conversion)), values[start : start + CHUNK])
        inserted += max(result.rowcount, 0)
    if values:
        outbox.record_conversions(conn, values, owners)
    return inserted
