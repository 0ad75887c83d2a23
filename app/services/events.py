"""The event feed (`GET /api/v1/events`, docs/webhooks.md): events in `seq` order (commit order,
app/webhooks/sequence.py), owner-scoped, resumable from an opaque cursor.

A client that follows `next` from the start sees every stored event exactly once: an event is
only listed once it has a `seq`, and a `seq` is only handed out above every `seq` visible before.
`next` moves past the last item, or, when the page is not full, to the highest `seq` handed out
when the page was read (the events skipped are those the filters leave out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.errors import Forbidden, ValidationFailed
from app.models import Event, EventType, User
from app.settings import Settings
from app.webhooks import cursor, sequence
from app.webhooks.payload import events_query, in_seq_order, payloads, read_conversions

MAX_LIMIT = 1000


def feed(
    db: Session,
    user: User,
    settings: Settings,
    *,
    after: str | None,
    limit: int,
    types: Sequence[EventType],
    campaign_id: int | None,
    everyone: bool,
) -> tuple[list[dict[str, Any]], str]:
    if everyone and not user.is_admin:
        raise Forbidden("Administrator rights required for all=true.", code="admin_required")
    position = 0
    if after:
        try:
            position = cursor.decode(settings, after, user.id)
        except cursor.BadCursor as exc:
            raise ValidationFailed([{"loc": ["query", "after"], "msg": str(exc), "type": "value_error"}]) from None
    high = sequence.last_seq(db.connection())
    owner_id = None if everyone else user.id
    rows = db.execute(page(owner_id, campaign_id, types, position, high, limit)).all()
    last = rows[-1].seq if len(rows) == limit else max(high, position)
    conversions = read_conversions(db.connection(), rows)
    return payloads(rows, conversions), cursor.encode(settings, user.id, last)


def page(
    owner_id: int | None, campaign_id: int | None, types: Sequence[EventType], position: int, high: int, limit: int
) -> Any:
    """The feed's next `limit` events after `position`, up to `high` (None owner: everyone's)."""
    stmt = in_seq_order(events_query(), owner_id, campaign_id).where(Event.seq > position, Event.seq <= high)
    if types:
        stmt = stmt.where(Event.type.in_([str(t) for t in types]))
    return stmt.order_by(Event.seq).limit(limit)
