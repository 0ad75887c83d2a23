"""Campaign stats: the counts and rates of a campaign and its A/B groups.

The stats read the report counters (app/models/stats.py, kept current by
app/services/counters/), never the openings themselves, so their cost follows the number of
contacts, not of openings. For a campaign:

1. its groups (id, name);
2. group_counts, one row per group (the sums of its contacts' rows): contacts, sent, pixels,
   opens per client kind, openers, openers with a known delay, clicks, clickers;
3. the median delay to the first open, per group and overall: the middle entry (or the two middle
   ones) of the index (campaign_id[, group_id], first_open_delay_us), read at its position
   (`ORDER BY ... LIMIT 2 OFFSET n`), index-only;
4. with `bucket`: the time series (app/services/series.py).

Campaign totals are the sums of the group rows (a contact belongs to exactly one group).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import MACHINE_CLIENTS, OPEN_COLUMNS, Campaign, ClientKind, ContactStats, Group, GroupCounts
from app.schemas.reports import Bucket, CampaignStats, GroupStats
from app.services.series import campaign_series

RATE_DIGITS = 4


@dataclass
class _Tally:
    """What is counted per group (and summed for the campaign)."""

    contacts: int = 0
    sent: int = 0
    pixels: int = 0
    unique_opens: int = 0
    timed_opens: int = 0  # openers with a reference time (the median's population)
    clicks: int = 0
    unique_clicks: int = 0
    by_client: dict[ClientKind, int] = field(default_factory=lambda: dict.fromkeys(ClientKind, 0))
    median_us: float | None = None

    def add(self, other: _Tally) -> None:
        self.contacts += other.contacts
        self.sent += other.sent
        self.pixels += other.pixels
        self.unique_opens += other.unique_opens
        self.timed_opens += other.timed_opens
        self.clicks += other.clicks
        self.unique_clicks += other.unique_clicks
        for kind, n in other.by_client.items():
            self.by_client[kind] += n


def _ratio(num: int, den: int) -> Fraction:
    return Fraction(num, den) if den else Fraction(0)


def _fields(tally: _Tally, basis: str) -> dict[str, Any]:
    den = tally.sent if basis == "sent" else tally.contacts
    total = sum(tally.by_client.values())
    machine = sum(n for kind, n in tally.by_client.items() if kind in MACHINE_CLIENTS)
    return {
        "contacts_scheduled": tally.contacts,
        "contacts_sent": tally.sent,
        "pixels": tally.pixels,
        "total_opens": total,
        "unique_opens": tally.unique_opens,
        "open_rate": round(float(_ratio(tally.unique_opens, den)), RATE_DIGITS),
        "open_rate_basis": basis,
        "clicks": tally.clicks,
        "unique_clicks": tally.unique_clicks,
        "click_through_rate": round(float(_ratio(tally.unique_clicks, den)), RATE_DIGITS),
        "click_to_open_rate": round(float(_ratio(tally.unique_clicks, tally.unique_opens)), RATE_DIGITS),
        "human_opens": total - machine,
        "machine_opens": machine,
        "opens_by_client": {kind.value: tally.by_client[kind] for kind in ClientKind},
        "median_seconds_to_first_open": None if tally.median_us is None else round(tally.median_us / 1e6, 3),
    }


def _group_counts(db: Session, campaign_id: int) -> dict[int, tuple[str, _Tally]]:
    groups = {
        gid: (name, _Tally())
        for gid, name in db.execute(
            select(Group.id, Group.name).where(Group.campaign_id == campaign_id).order_by(Group.id)
        ).all()
    }
    g = GroupCounts
    rows = db.execute(
        select(
            g.group_id,
            g.contacts,
            g.sent,
            g.pixels,
            g.openers,
            g.timed_openers,
            g.clicks,
            g.clickers,
            *(getattr(g, name) for name in OPEN_COLUMNS.values()),
        ).where(g.campaign_id == campaign_id)
    ).all()
    for gid, contacts, sent, pixels, openers, timed, clicks, clickers, *opens in rows:
        if gid not in groups:  # (a group created since the first query is simply not in this report)
            continue
        tally = groups[gid][1]
        tally.contacts, tally.sent, tally.pixels = contacts, sent, pixels
        tally.unique_opens, tally.timed_opens = openers, timed
        tally.clicks, tally.unique_clicks = clicks, clickers
        tally.by_client = dict(zip(OPEN_COLUMNS, opens, strict=True))
    return groups


def _median(db: Session, campaign_id: int, group_id: int | None, n: int) -> float | None:
    """The median of the first-open delays of a group (None: of the campaign), `n` of them:
    read at its position in the index, one or two entries."""
    if n == 0:
        return None
    s = ContactStats
    stmt = select(s.first_open_delay_us).where(s.campaign_id == campaign_id, s.first_open_delay_us.is_not(None))
    if group_id is not None:
        stmt = stmt.where(s.group_id == group_id)
    ordered = stmt.order_by(s.first_open_delay_us).offset((n - 1) // 2).limit(1 if n % 2 else 2)
    middle = [float(v) for v in db.scalars(ordered) if v is not None]
    return sum(middle) / len(middle) if middle else None


def campaign_stats(
    db: Session,
    campaign: Campaign,
    *,
    bucket: Bucket | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> CampaignStats:
    """The report of one campaign (the caller has checked ownership)."""
    # from/to only delimit the series: without a bucket there is no series and they are unused.
    series = campaign_series(db, campaign.id, bucket, start, end) if bucket is not None else None

    groups = _group_counts(db, campaign.id)
    total = _Tally()
    for gid, (_name, tally) in groups.items():
        tally.median_us = _median(db, campaign.id, gid, tally.timed_opens)
        total.add(tally)
    total.median_us = _median(db, campaign.id, None, total.timed_opens)
    # One basis for the whole campaign, so that the groups' rates compare.
    basis = "sent" if total.sent else "scheduled"

    winner: int | None = None
    best = Fraction(-1)
    for gid, (_name, tally) in groups.items():  # ascending ids: a tie keeps the lowest id
        rate = _ratio(tally.unique_opens, tally.sent if basis == "sent" else tally.contacts)
        if tally.unique_opens and rate > best:
            winner, best = gid, rate

    data = _fields(total, basis)
    data["campaign_id"] = campaign.id
    data["groups"] = [
        GroupStats(group_id=gid, name=name, **_fields(tally, basis)) for gid, (name, tally) in groups.items()
    ]
    data["winner"] = winner
    if series is not None:
        data["series"] = series
    return CampaignStats(**data)
