"""`pixeltrack reclassify`: re-derive the client class and reason of stored openings and clicks
after a classifier or pattern-data update, and move the report counters with them.

Batches by id (each its own short transaction, through the app's sessions, so the counter hooks
of app/services/counters/session.py move the touched contacts' counters). Idempotent: a second
run changes nothing. Rows whose class rests on a fact that is not stored are kept as they are:
`method:*` / `header:*` (a HEAD or prefetch request: the method and headers are not kept) and
`api:*` (set by hand through the API); `trap:link` (a click on the campaign's trap link: a
machine's whatever its agent, app/tracking/click_rules.py); `timing:*` (a click's timing
against the send or the contact's other clicks: not a matter of agent or address either); and
every row of a contact whose tracking consent is not `full` (docs/consent.md): its IP and user
agent were never stored, or were erased.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.models import Contact
from app.models.tracking import EVENT_TABLES, Click, EventTable, Opening
from app.services import consent
from app.tracking.classify import classify

# Facts not stored with the row, a person's choice, or rules the agent cannot overturn (the trap
# link, the click timing rules of app/tracking/click_rules.py).
KEPT_PREFIXES = ("method:", "header:", "api:", "trap:", "timing:")


@dataclass
class Reclassified:
    examined: int = 0
    changed: int = 0


def _reclassify_batch(
    db: Session, table: EventTable, after: int, batch_size: int, campaign_id: int | None
) -> tuple[int, int, int]:
    """One batch of rows with ids above `after`: (rows examined, rows changed, last id seen)."""
    model = table.model
    query = (
        select(model, Contact.tracking)
        .join(Contact, Contact.id == model.contact_id)
        .where(model.id > after)
        .order_by(model.id)
        .limit(batch_size)
    )
    if campaign_id is not None:
        query = query.where(model.campaign_id == campaign_id)
    found = cast(list[tuple[Opening | Click, str]], db.execute(query).all())
    changed = 0
    for row, tracking in found:
        if row.reason.startswith(KEPT_PREFIXES) or tracking != consent.FULL:
            continue
        verdict = classify(row.user_agent, row.ip)
        if (row.client, row.reason) != (verdict.client.value, verdict.reason):
            row.client, row.reason = verdict.client.value, verdict.reason
            changed += 1
    db.flush()
    return len(found), changed, found[-1][0].id if found else after


def reclassify(
    sessions: sessionmaker[Session],
    *,
    campaign_id: int | None = None,
    batch_size: int = 1000,
    progress: Callable[[str, Reclassified], None] | None = None,
) -> dict[str, Reclassified]:
    """Reclassify every opening and click (or those of one campaign); per table, what was done."""
    done: dict[str, Reclassified] = {}
    for table in EVENT_TABLES:
        tally = done[table.model.__tablename__] = Reclassified()
        after = 0
        while True:
            with sessions() as db, db.begin():
                examined, changed, after = _reclassify_batch(db, table, after, batch_size, campaign_id)
            if not examined:
                break
            tally.examined += examined
            tally.changed += changed
            if progress is not None:
                progress(table.model.__tablename__, tally)
    return done
