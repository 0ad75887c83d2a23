"""Campaign stats: the counts and rates of a campaign and its A/B groups.

The stats read the report counters (app/models/stats.py, kept current by
app/services/counters/), never the openings themselves, so their cost follows the number of
contacts, not of openings. For a campaign:

1. its groups (id, name);
2. group_counts, one row per group (the sums of its contacts' rows): contacts, sent, pixels,
   opens per client kind, openers, openers with a known delay, clicks (all, human, machine),
   clickers, human openers (a `browser` opening or a human click), inferred openers (a human
   click only), human clickers;
3. the median delay to the first open, per group and overall: the middle entry (or the two middle
   ones) of the index (campaign_id[, group_id], first_open_delay_us), read at its position
   (`ORDER BY ... LIMIT 2 OFFSET n`), index-only;
4. with `bucket`: the time series (app/services/series.py);
5. the conversions per group (app/services/conversion_stats.py: two grouped queries on the
   `conversions` table);
6. the A/B comparisons of each group with the control group on the human open and click rates
   and the conversion rate, and the winner (app/services/abtest.py).

Campaign totals are the sums of the group rows (a contact belongs to exactly one group).

What each figure counts: app/schemas/reports.py and docs/api.md#reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ValidationFailed
from app.models import MACHINE_CLIENTS, OPEN_COLUMNS, Campaign, ClientKind, ContactStats, Group, GroupCounts
from app.schemas.reports import ABComparison, ABMetric, Bucket, CampaignStats, GroupAB, GroupStats
from app.services import abtest, conversion_stats
from app.services.series import campaign_series

RATE_DIGITS = 4
P_DIGITS = 4  # significant digits of p-values (a p of 3e-12 stays 3e-12, not 0)


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
    human_clicks: int = 0
    machine_clicks: int = 0
    human_openers: int = 0  # a `browser` opening or a human click
    inferred_openers: int = 0  # a human click, no `browser` opening
    human_clickers: int = 0
    by_client: dict[ClientKind, int] = field(default_factory=lambda: dict.fromkeys(ClientKind, 0))
    median_us: float | None = None
    conv: conversion_stats.ConversionTally = field(default_factory=conversion_stats.ConversionTally)

    def add(self, other: _Tally) -> None:
        self.contacts += other.contacts
        self.sent += other.sent
        self.pixels += other.pixels
        self.unique_opens += other.unique_opens
        self.timed_opens += other.timed_opens
        self.clicks += other.clicks
        self.unique_clicks += other.unique_clicks
        self.human_clicks += other.human_clicks
        self.machine_clicks += other.machine_clicks
        self.human_openers += other.human_openers
        self.inferred_openers += other.inferred_openers
        self.human_clickers += other.human_clickers
        for kind, n in other.by_client.items():
            self.by_client[kind] += n
        self.conv.add(other.conv)


def _ratio(num: int, den: int) -> Fraction:
    return Fraction(num, den) if den else Fraction(0)


def _rate(num: int, den: int) -> float:
    return round(float(_ratio(num, den)), RATE_DIGITS)


def _trials(tally: _Tally, basis: str) -> int:
    """The denominator of the group's rates."""
    return tally.sent if basis == "sent" else tally.contacts


def _fields(tally: _Tally, basis: str) -> dict[str, Any]:
    den = _trials(tally, basis)
    total = sum(tally.by_client.values())
    machine = sum(n for kind, n in tally.by_client.items() if kind in MACHINE_CLIENTS)
    return {
        "contacts_scheduled": tally.contacts,
        "contacts_sent": tally.sent,
        "pixels": tally.pixels,
        "total_opens": total,
        "unique_opens": tally.unique_opens,
        "open_rate": _rate(tally.unique_opens, den),
        "open_rate_basis": basis,
        "clicks": tally.clicks,
        "unique_clicks": tally.unique_clicks,
        "click_through_rate": _rate(tally.unique_clicks, den),
        "click_to_open_rate": _rate(tally.unique_clicks, tally.unique_opens),
        "human_opens": tally.by_client[ClientKind.browser],
        "machine_opens": machine,
        "unknown_opens": tally.by_client[ClientKind.unknown],
        "opens_by_client": {kind.value: tally.by_client[kind] for kind in ClientKind},
        "human_unique_opens": tally.human_openers,
        "inferred_opens": tally.inferred_openers,
        "human_open_rate": _rate(tally.human_openers, den),
        "human_clicks": tally.human_clicks,
        "scanner_clicks": tally.machine_clicks,
        "human_unique_clicks": tally.human_clickers,
        "human_click_through_rate": _rate(tally.human_clickers, den),
        "median_seconds_to_first_open": None if tally.median_us is None else round(tally.median_us / 1e6, 3),
        **conversion_stats.fields(tally.conv, den, tally.human_clickers, _rate),
    }


def _group_counts(db: Session, campaign_id: int) -> dict[int, tuple[str, _Tally]]:
    groups = {
        gid: (name, _Tally())
        for gid, name in db.execute(
            select(Group.id, Group.name).where(Group.campaign_id == campaign_id).order_by(Group.id)
        ).all()
    }
    g = GroupCounts
    # The _Tally fields read as they are, by the group_counts column of the same name.
    same = ["contacts", "sent", "pixels", "clicks", "human_clicks", "machine_clicks"]
    same += ["human_openers", "inferred_openers", "human_clickers"]
    rows = db.execute(
        select(
            g.group_id,
            g.openers,
            g.timed_openers,
            g.clickers,
            *(getattr(g, name) for name in same),
            *(getattr(g, name) for name in OPEN_COLUMNS.values()),
        ).where(g.campaign_id == campaign_id)
    ).all()
    for gid, openers, timed, clickers, *values in rows:
        if gid not in groups:  # (a group created since the first query is simply not in this report)
            continue
        tally = groups[gid][1]
        tally.unique_opens, tally.timed_opens, tally.unique_clicks = openers, timed, clickers
        for name, value in zip(same, values[: len(same)], strict=True):
            setattr(tally, name, value)
        opens = values[len(same) :]
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


# The A/B comparisons.


def _successes(tally: _Tally, metric: ABMetric) -> int:
    if metric is ABMetric.conversions:
        return tally.conv.converters
    return tally.human_openers if metric is ABMetric.opens else tally.human_clickers


def _counts(tally: _Tally, metric: ABMetric, basis: str) -> abtest.Counts:
    """(successes, trials) of a group on a metric. Successes are capped at the trials: contacts not
    marked sent who opened anyway count in human_unique_opens but not in the `sent` basis."""
    trials = _trials(tally, basis)
    return min(_successes(tally, metric), trials), trials


def _p(value: float) -> float:
    return float(f"{value:.{P_DIGITS}g}")


def _figure(value: float | None) -> float | None:
    return None if value is None else round(value, RATE_DIGITS)


def _comparison(result: abtest.Comparison) -> ABComparison:
    return ABComparison(
        difference=_figure(result.difference),
        ci_low=_figure(result.ci_low),
        ci_high=_figure(result.ci_high),
        p_value=_p(result.p_value),
        p_adjusted=_p(result.p_adjusted),
        test=result.test,
    )


def _control(groups: dict[int, tuple[str, _Tally]], control: int | None) -> int | None:
    if control is None:
        return next(iter(groups), None)  # the first group by id
    if control not in groups:
        msg = "control: not a group of this campaign"
        raise ValidationFailed([{"loc": ["query", "control"], "msg": msg, "type": "value_error"}])
    return control


def _ab(
    groups: dict[int, tuple[str, _Tally]], control: int, basis: str, metric: ABMetric, min_sample: int
) -> tuple[dict[int, GroupAB], int | None]:
    """Each group but the control against the control, on every metric; the winner on `metric`."""
    results: dict[ABMetric, dict[int, abtest.Comparison]] = {}
    winner: int | None = None
    for kind in ABMetric:
        counts = {gid: _counts(tally, kind, basis) for gid, (_name, tally) in groups.items()}
        arms = {gid: n for gid, n in counts.items() if gid != control}
        results[kind] = abtest.compare_arms(counts[control], arms)
        if kind is metric:
            winner = abtest.winner(control, counts[control], arms, min_sample=min_sample)
    ab = {
        gid: GroupAB(**{kind.value: _comparison(results[kind][gid]) for kind in ABMetric})
        for gid in groups
        if gid != control
    }
    return ab, winner


def campaign_stats(
    db: Session,
    campaign: Campaign,
    *,
    bucket: Bucket | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    control: int | None = None,
    metric: ABMetric = ABMetric.opens,
    min_sample: int = 100,
) -> CampaignStats:
    """The report of one campaign (the caller has checked ownership). The groups are compared with
    `control` (a group of the campaign; None: its first group); `winner` is decided on `metric`,
    never below `min_sample` contacts in the control or the arm."""
    groups = _group_counts(db, campaign.id)
    control = _control(groups, control)  # (checked before the series: a bad request does no work)
    # from/to only delimit the series: without a bucket there is no series and they are unused.
    series = campaign_series(db, campaign.id, bucket, start, end) if bucket is not None else None

    conversions = conversion_stats.by_group(db, campaign.id)
    total = _Tally()
    for gid, (_name, tally) in groups.items():
        tally.conv = conversions.get(gid, tally.conv)
        tally.median_us = _median(db, campaign.id, gid, tally.timed_opens)
        total.add(tally)
    total.median_us = _median(db, campaign.id, None, total.timed_opens)
    # One basis for the whole campaign, so that the groups' rates compare.
    basis = "sent" if total.sent else "scheduled"
    ab, winner = _ab(groups, control, basis, metric, min_sample) if control is not None else ({}, None)

    data = _fields(total, basis)
    data["campaign_id"] = campaign.id
    data["groups"] = [
        GroupStats(group_id=gid, name=name, ab=ab.get(gid), **_fields(tally, basis))
        for gid, (name, tally) in groups.items()
    ]
    data["control_group_id"] = control
    data["winner_metric"] = metric
    data["winner"] = winner
    if series is not None:
        data["series"] = series
    return CampaignStats(**data)
