"""Counters derived from openings, clicks and pixels, kept up to date as they change, so that a
campaign's report reads one row per contact and one per hour instead of every opening.

They are derived data: `app/services/counters/` maintains them (the tracking worker adds what
each batch inserted; every other write recomputes the rows it touched from the source tables)
and can rebuild them from scratch.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TABLE_ARGS, Base, BigId
from app.models.tracking import ClientKind

# One counter column per client kind: contact_stats.opens_<kind>.
OPEN_COLUMNS = {kind: f"opens_{kind.value}" for kind in ClientKind}


# Composite primary keys: no SQLite AUTOINCREMENT (and no id is ever handed out).
_ARGS = {key: value for key, value in TABLE_ARGS.items() if key != "sqlite_autoincrement"}


def _counter() -> Mapped[int]:
    return mapped_column(Integer, default=0, server_default="0")


class ContactStats(Base):
    """One row per contact (created with it): what the report needs about that contact.

    `campaign_id` leads the primary key so that a campaign's rows are read in one range (on
    MariaDB the table is clustered on it)."""

    __tablename__ = "contact_stats"
    __table_args__ = (
        Index(None, "contact_id"),  # the foreign key (a contact's campaign never changes)
        # Medians by index position (per group and per campaign), first opens per time bucket.
        Index(None, "campaign_id", "group_id", "first_open_delay_us"),
        Index(None, "campaign_id", "first_open_delay_us"),
        Index(None, "campaign_id", "first_opened_at"),
        _ARGS,
    )

    campaign_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    contact_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    group_id: Mapped[int] = mapped_column(BigId)
    sent: Mapped[bool] = mapped_column(default=False, server_default="0")
    # The contact's sent_at, else scheduled_at: the start of its time to first open.
    ref_at: Mapped[datetime | None]
    pixels: Mapped[int] = _counter()
    opens_apple_mpp: Mapped[int] = _counter()
    opens_gmail_proxy: Mapped[int] = _counter()
    opens_outlook_proxy: Mapped[int] = _counter()
    opens_yahoo_proxy: Mapped[int] = _counter()
    opens_other_proxy: Mapped[int] = _counter()
    opens_scanner: Mapped[int] = _counter()
    opens_bot: Mapped[int] = _counter()
    opens_browser: Mapped[int] = _counter()
    opens_unknown: Mapped[int] = _counter()
    first_opened_at: Mapped[datetime | None]
    # first_opened_at - ref_at in microseconds, negative clamped to 0; NULL without either.
    first_open_delay_us: Mapped[int | None] = mapped_column(BigInteger)
    clicks: Mapped[int] = _counter()  # every click, whatever its client
    human_clicks: Mapped[int] = _counter()  # clicks by a `browser` client
    machine_clicks: Mapped[int] = _counter()  # clicks by a MACHINE_CLIENTS class (scanners, bots, proxies)
    first_clicked_at: Mapped[datetime | None]


class GroupCounts(Base):
    """The sums of a group's contact_stats rows, kept with them (one row per group that ever
    had a contact): the report's per-group counts without reading every contact."""

    __tablename__ = "group_counts"
    __table_args__ = (Index(None, "group_id"), _ARGS)  # the foreign key

    campaign_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    group_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    contacts: Mapped[int] = _counter()
    sent: Mapped[int] = _counter()
    pixels: Mapped[int] = _counter()
    opens_apple_mpp: Mapped[int] = _counter()
    opens_gmail_proxy: Mapped[int] = _counter()
    opens_outlook_proxy: Mapped[int] = _counter()
    opens_yahoo_proxy: Mapped[int] = _counter()
    opens_other_proxy: Mapped[int] = _counter()
    opens_scanner: Mapped[int] = _counter()
    opens_bot: Mapped[int] = _counter()
    opens_browser: Mapped[int] = _counter()
    opens_unknown: Mapped[int] = _counter()
    openers: Mapped[int] = _counter()  # contacts with a first_opened_at
    timed_openers: Mapped[int] = _counter()  # contacts with a first_open_delay_us (the medians' population)
    clicks: Mapped[int] = _counter()
    clickers: Mapped[int] = _counter()  # contacts with a first_clicked_at
    human_clicks: Mapped[int] = _counter()
    machine_clicks: Mapped[int] = _counter()
    # Contacts with opens_browser > 0 or human_clicks > 0 (a human click implies an open).
    human_openers: Mapped[int] = _counter()
    inferred_openers: Mapped[int] = _counter()  # human_clicks > 0 and opens_browser = 0
    human_clickers: Mapped[int] = _counter()  # human_clicks > 0


class CampaignHour(Base):
    """Openings and clicks of a campaign per hour (UTC): the report's time series."""

    __tablename__ = "campaign_hours"
    __table_args__ = (_ARGS,)

    campaign_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    # Whole hours since 1970-01-01 00:00 UTC.
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    opens: Mapped[int] = _counter()
    clicks: Mapped[int] = _counter()
