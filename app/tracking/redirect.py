"""The attribution token on a click's redirect (docs/conversions.md, "Attribution").

A click on a link with `attribution` is redirected to the link's URL with `pt=<token>` added
(app/tracking/attribution.py): the token names the campaign, the contact's group, the contact, the
link, the click's own event id (the id the recorded click gets) and when it was issued; for an
`anonymous` contact, only the campaign, the group and the link (contact 0, no click: the click's
row names its contact). Contacts whose tracking is `off` get the plain URL, as do clicks that are not
recorded at all (TRACKING_DISABLED, a honoured DNT).

The group and the consent level are the contact's, read from the database only for attribution
links and only on a miss of `ContactCache` (an in-process LRU with a short TTL, in a worker
thread as the link cache does): a consent withdrawn a moment ago may still get a token for up to
the TTL, and the conversion it carries is then refused when stored (app/tracking/conversions.py
reads the consent again). When the database cannot be read the redirect goes out without `pt`.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from app.db import connect_read_only
from app.models import Contact, Tracking
from app.tracking.attribution import Attribution, AttributionCodec
from app.tracking.readcache import ReadCache

log = logging.getLogger("pixeltrack.tracking")

PARAM = "pt"
NO_CLICK = "0" * 24  # an anonymous contact's token names no click (its row would name the contact)
_OFF, _ANONYMOUS = Tracking.off.value, Tracking.anonymous.value


def with_param(url: str, value: str, name: str = PARAM) -> str:
    """`url` with `name=value` as its last query parameter: an existing `name` parameter is
    dropped (not duplicated), every other one kept as it was, the fragment stays last."""
    base, hash_mark, fragment = url.partition("#")
    path, _, query = base.partition("?")
    kept = [part for part in query.split("&") if part and part.partition("=")[0] != name]
    kept.append(f"{name}={value}")
    return f"{path}?{'&'.join(kept)}{hash_mark}{fragment}"


class ContactInfo(NamedTuple):
    campaign_id: int
    group_id: int
    tracking: str


class ContactCache:
    """contact id → (campaign, group, consent), read on a miss, trusted for `ttl` seconds
    (app/tracking/readcache.py); a deleted contact is cached as None too."""

    def __init__(self, engine: Engine, *, ttl: float = 10.0, max_size: int = 50_000) -> None:
        self._engine = engine
        self._rows: ReadCache[ContactInfo] = ReadCache(self._query, what="contacts", ttl=ttl, max_size=max_size)

    def _query(self, contact_id: int) -> ContactInfo | None:
        with connect_read_only(self._engine) as conn:
            row = conn.execute(
                select(Contact.campaign_id, Contact.group_id, Contact.tracking).where(Contact.id == contact_id)
            ).first()
        return None if row is None else ContactInfo(*row)

    async def get(self, contact_id: int) -> ContactInfo | None:
        """The contact, or None when it does not exist. Raises SQLAlchemyError on a miss while the
        database is unreachable (the redirect then goes out without `pt`)."""
        return await self._rows.get(contact_id)

    def forget(self, contact_id: int) -> None:
        self._rows.forget(contact_id)


class Attributor:
    """Seals the attribution token of a click (one per API process, built at start-up)."""

    def __init__(self, codec: AttributionCodec, contacts: ContactCache) -> None:
        self.codec = codec
        self.contacts = contacts

    async def location(self, url: str, *, campaign_id: int, link_id: int, contact_id: int, event_id: str) -> str:
        """The redirect's Location: `url` with `pt=`, or `url` itself when the contact gets none
        (tracking `off`, deleted, not of the link's campaign, or unreadable now)."""
        try:
            contact = await self.contacts.get(contact_id)
        except SQLAlchemyError:
            return url
        if contact is None or contact.campaign_id != campaign_id or contact.tracking == _OFF:
            return url
        anonymous = contact.tracking == _ANONYMOUS
        token = self.codec.seal(
            Attribution(
                campaign_id=campaign_id,
                group_id=contact.group_id,
                contact_id=0 if anonymous else contact_id,
                link_id=link_id,
                click_event_id=NO_CLICK if anonymous else event_id,  # the click row names its contact
                issued_at=int(time.time()),
            )
        )
        return with_param(url, token)
