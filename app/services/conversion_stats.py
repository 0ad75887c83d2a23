"""The conversion figures of a campaign's stats (docs/conversions.md#reports), read from the
`conversions` table in two grouped queries per report, whatever its size:

1. per group, by the index (campaign_id, group_id, contact_id) and contact_stats' primary key:
   conversions, distinct converters, anonymous conversions (no contact id: they name no one, so
   they cannot be told apart), and the converters who clicked as a person (human_clicks > 0);
2. per group and currency, the sum of the values, in exact integers of 1/10,000 (the column's
   scale): SQLite stores the NUMERIC column as a float, summed as floats it would drift.

Money leaves as decimal strings with 4 decimals, never as floats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import BigInteger, and_, case, cast, distinct, func, select
from sqlalchemy.orm import Session

from app.models import ContactStats, Conversion
from app.models.conversion import VALUE_SCALE

UNIT = 10**VALUE_SCALE  # the stored values' resolution: 1/10,000


@dataclass
class ConversionTally:
    """The conversion counts of a group (and, summed, of the campaign)."""

    conversions: int = 0
    converters: int = 0  # distinct contacts (anonymous conversions have none)
    anonymous: int = 0
    human_clicker_converters: int = 0  # converters with a human click
    revenue: dict[str, int] = field(default_factory=dict)  # currency → sum in 1/10,000

    def add(self, other: ConversionTally) -> None:
        self.conversions += other.conversions
        self.converters += other.converters  # a contact belongs to one group: distinct across groups
        self.anonymous += other.anonymous
        self.human_clicker_converters += other.human_clicker_converters
        for currency, units in other.revenue.items():
            self.revenue[currency] = self.revenue.get(currency, 0) + units


def money(units: int) -> str:
    """An amount in 1/10,000 as a decimal string with 4 decimals ("42.5000")."""
    return format(Decimal(units).scaleb(-VALUE_SCALE), "f")


def _per_contact(units: int, contacts: int) -> str:
    if not contacts:
        return money(0)
    share = (Decimal(units) / contacts).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return money(int(share))


def by_group(db: Session, campaign_id: int) -> dict[int, ConversionTally]:
    """The conversion tallies of the campaign's groups that have conversions."""
    c, s = Conversion, ContactStats
    tallies: dict[int, ConversionTally] = {}
    human = case((s.human_clicks > 0, c.contact_id))
    counts = (
        select(
            c.group_id,
            func.count(),
            func.count(distinct(c.contact_id)),
            func.count(distinct(human)),
            func.sum(case((c.contact_id.is_(None), 1), else_=0)),
        )
        .outerjoin(s, and_(s.campaign_id == c.campaign_id, s.contact_id == c.contact_id))
        .where(c.campaign_id == campaign_id)
        .group_by(c.group_id)
    )
    for group_id, n, converters, humans, anonymous in db.execute(counts).all():
        tallies[group_id] = ConversionTally(int(n), int(converters), int(anonymous or 0), int(humans))
    units = cast(func.round(c.value * UNIT), BigInteger)
    revenue = (
        select(c.group_id, c.currency, func.sum(units))
        .where(c.campaign_id == campaign_id, c.currency.is_not(None), c.value.is_not(None))
        .group_by(c.group_id, c.currency)
    )
    for group_id, currency, total in db.execute(revenue).all():
        tallies.setdefault(group_id, ConversionTally()).revenue[str(currency)] = int(total or 0)
    return tallies


def fields(
    tally: ConversionTally, trials: int, human_clickers: int, rate: Callable[[int, int], float]
) -> dict[str, Any]:
    """The stats fields of a tally; `trials` is the rates' denominator, `rate(num, den)` their rounding."""
    currencies = sorted(tally.revenue)
    return {
        "conversions": tally.conversions,
        "unique_converters": tally.converters,
        "anonymous_conversions": tally.anonymous,
        "conversion_rate": rate(tally.converters, trials),
        "conversion_rate_of_human_clickers": rate(tally.human_clicker_converters, human_clickers),
        "revenue": {currency: money(tally.revenue[currency]) for currency in currencies},
        "value_per_contact": {currency: _per_contact(tally.revenue[currency], trials) for currency in currencies},
    }
