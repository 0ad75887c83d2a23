"""Per-contact tracking consent (docs/consent.md): who is listed, and the erasure of what a
contact who withdraws consent left behind.

- `full`: openings and clicks are stored with IP and user agent and listed per contact.
- `anonymous`: counted in every aggregate, stored without IP and user agent (the ingest drops
  them after classifying), never listed per contact (openings API, CSV exports).
- `off`: nothing recorded (the ingest skips the contact's events); rows stored while the contact
  was `full` keep counting in the aggregates but are no longer listed either.

From `full` to `anonymous` or `off`, the IP addresses and user agents already stored for the
contact are erased in the same transaction; going back to `full` brings nothing back.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.orm import Session

from app.models import Click, Contact, Opening, Tracking

FULL = Tracking.full.value
OFF = Tracking.off.value
ANONYMOUS = Tracking.anonymous.value
CHUNK = 1000


def listed() -> ColumnElement[bool]:
    """The condition on `Contact` under which its openings and clicks are shown one by one
    (openings API, CSV exports): consent `full` only."""
    return Contact.tracking == FULL


def withdraws(before: str, after: str) -> bool:
    """True when a change of consent takes back what `full` allowed: IP and user agent go."""
    return before == FULL and after != FULL


def erase_identifying(db: Session, contact_ids: Iterable[int]) -> None:
    """Set the IP and user agent of these contacts' openings and clicks to NULL (by the contact_id
    indexes; only the rows that still hold one are written). Nothing the report counters read
    changes: app/services/counters/session.py lets an UPDATE of other columns through untouched."""
    ordered = sorted(set(contact_ids))
    for model in (Opening, Click):
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            db.execute(
                update(model)
                .where(model.contact_id.in_(chunk), or_(model.ip.is_not(None), model.user_agent.is_not(None)))
                .values(ip=None, user_agent=None)
                .execution_options(synchronize_session=False)
            )
