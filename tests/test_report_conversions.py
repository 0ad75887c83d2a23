"""Reports on conversions (issue #15): the stats fields, the series, conversions.csv, the A/B
comparison on the conversion rate, and deletion. Conversions are written by the one store
(tests/factories.make_conversion → app/tracking/conversions.store); every number is worked out by
hand from the fixture, the A/B figures against scipy (tests/test_report_ab.py)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, Conversion, Event, Group, Tracking, User
from app.services import export
from app.settings import Settings
from tests import factories
from tests.support.reports import T0, at, counters, group_of, make_arm, stats
from tests.test_report_ab import assert_comparison, fisher_p, z_p

SENT = {"status": "sent", "scheduled_at": T0, "sent_at": T0}


@pytest.fixture
def outcomes(db: Session, user: User) -> dict[str, Any]:
    """Groups A and B; 6 contacts sent, b3 not.

    A: a1 and a2 click in a browser; a3 does not click; a4 (consent `anonymous`) clicks in a browser.
       a1: purchase 42.50 EUR (order o-1, reported twice: once) at +100 s, signup at +200 s;
       a2: purchase 10.00 USD at +3700 s; a4: 0.10 EUR (order o-3) at +150 s and 0.10 EUR (no order
       id) at +4000 s, both stored without a contact (anonymous).
    B: b1 clicks as a scanner; b2 nothing; b3 (failed, never sent) signs up at +300 s.
       b1: 0.10 EUR at +90,000 s (the next day).
    """
    campaign = factories.make_campaign(db, user, name="Outcomes")
    a, b = factories.make_group(db, campaign, name="A"), factories.make_group(db, campaign, name="B")
    with factories.one_commit(db):
        a1, a2, a3 = (factories.make_contact(db, a, **SENT) for _ in range(3))
        a4 = factories.make_contact(db, a, tracking=Tracking.anonymous.value, **SENT)
        b1, b2 = (factories.make_contact(db, b, **SENT) for _ in range(2))
        b3 = factories.make_contact(db, b, status="failed", scheduled_at=T0)
        link = factories.make_link(db, campaign)
        for contact in (a1, a2, a4):
            factories.make_click(db, link, contact, clicked_at=at(50), client="browser")
        factories.make_click(db, link, b1, clicked_at=at(60), client="scanner")
    eur: dict[str, Any] = {"value": "42.50", "currency": "EUR"}
    conversions = {
        "a1": factories.make_conversion(db, a1, order_id="o-1", occurred_at=at(100), link_id=link.id, **eur),
        "a1 again": factories.make_conversion(db, a1, order_id="o-1", occurred_at=at(100), source="browser", **eur),
        "a1 signup": factories.make_conversion(db, a1, name="signup", occurred_at=at(200)),
        "a2": factories.make_conversion(db, a2, value="10", currency="USD", occurred_at=at(3700)),
        "a4": factories.make_conversion(db, a4, value="0.10", currency="EUR", order_id="o-3", occurred_at=at(150)),
        "a4 again": factories.make_conversion(db, a4, value="0.1", currency="EUR", occurred_at=at(4000)),
        "b1": factories.make_conversion(db, b1, value="0.1", currency="EUR", occurred_at=at(90_000)),
        "b3": factories.make_conversion(db, b3, name="signup", occurred_at=at(300)),
    }
    assert conversions["a1"] is not None
    assert conversions["a1 again"] is not None
    assert conversions["a1"].id == conversions["a1 again"].id  # the same order: stored once
    return {
        "campaign": campaign,
        "a": a,
        "b": b,
        "contacts": {"a1": a1, "a2": a2, "a3": a3, "a4": a4, "b1": b1, "b2": b2, "b3": b3},
        "conversions": conversions,
        "link": link,
    }


def conversion_fields(body: dict[str, Any]) -> dict[str, Any]:
    names = ["conversions", "unique_converters", "anonymous_conversions", "conversion_rate"]
    names += ["conversion_rate_of_human_clickers", "revenue", "value_per_contact"]
    return {name: body[name] for name in names}


def test_stats_of_conversions(client: Any, outcomes: dict[str, Any], headers: dict[str, str]) -> None:
    body = stats(client, outcomes["campaign"].id, headers)
    assert conversion_fields(group_of(body, outcomes["a"].id)) == {
        "conversions": 5,  # a1 twice (the order counts once), a2, a4 twice
        "unique_converters": 2,  # a1, a2: a4's conversions name no one
        "anonymous_conversions": 2,
        "conversion_rate": 0.5,  # 2 / 4 sent
        "conversion_rate_of_human_clickers": 0.6667,  # a1, a2 of the human clickers a1, a2, a4
        "revenue": {"EUR": "42.7000", "USD": "10.0000"},
        "value_per_contact": {"EUR": "10.6750", "USD": "2.5000"},
    }
    assert conversion_fields(group_of(body, outcomes["b"].id)) == {
        "conversions": 2,
        "unique_converters": 2,  # b1, and b3, who was never sent (the numerator, not the denominator)
        "anonymous_conversions": 0,
        "conversion_rate": 1.0,  # 2 / 2 sent
        "conversion_rate_of_human_clickers": 0.0,  # b1's click is a scanner's: no human clicker
        "revenue": {"EUR": "0.1000"},
        "value_per_contact": {"EUR": "0.0500"},
    }
    assert conversion_fields(body) == {
        "conversions": 7,
        "unique_converters": 4,
        "anonymous_conversions": 2,
        "conversion_rate": 0.6667,  # 4 / 6
        "conversion_rate_of_human_clickers": 0.6667,
        "revenue": {"EUR": "42.8000", "USD": "10.0000"},
        "value_per_contact": {"EUR": "7.1333", "USD": "1.6667"},  # 42.8 / 6, 10 / 6 (half up)
    }
    assert group_of(body, outcomes["b"].id)["human_unique_clicks"] == 0
    assert group_of(body, outcomes["a"].id)["human_unique_clicks"] == 3


def test_money_is_exact_and_rounded_half_up(client: Any, db: Session, user: User, headers: dict[str, str]) -> None:
    """Decimal strings from exact sums on both legs (SQLite stores the column as a float: summed as
    floats, 0.1 + 0.2 would drift), value per contact rounded half up to 4 decimals."""
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    with factories.one_commit(db):
        contacts = [factories.make_contact(db, group, **SENT) for _ in range(2)]
        for value in ("0.1", "0.2", "0.0001"):
            factories.make_conversion(db, contacts[0], value=value, currency="EUR")
        for _ in range(3):
            factories.make_conversion(db, contacts[1], value="12345678901.2345", currency="USD")
    body = stats(client, campaign.id, headers)
    assert body["revenue"] == {"EUR": "0.3001", "USD": "37037036703.7035"}
    # 0.3001 / 2 = 0.15005 → 0.1501 (half up); 37037036703.7035 / 2 = 18518518351.85175 → …8518.
    assert body["value_per_contact"] == {"EUR": "0.1501", "USD": "18518518351.8518"}
    assert body["conversion_rate"] == 1.0
    assert Decimal(body["revenue"]["EUR"]) == Decimal("0.3001")


def test_series_count_conversions_by_their_time(client: Any, outcomes: dict[str, Any], headers: dict[str, str]) -> None:
    campaign_id = outcomes["campaign"].id
    day = stats(client, campaign_id, headers, bucket="day")["series"]
    assert [(p["bucket_start"], p["clicks"], p["conversions"]) for p in day] == [
        ("2026-03-02T00:00:00+00:00", 4, 6),  # +100 (o-1), +150, +200, +300, +3700, +4000
        ("2026-03-03T00:00:00+00:00", 0, 1),  # b1 at +90,000 s: the default range reaches it
    ]
    hours = stats(
        client, campaign_id, headers, bucket="hour", **{"from": "2026-03-02T08:00:00Z", "to": "2026-03-02T11:00:00Z"}
    )["series"]
    assert [(p["bucket_start"], p["conversions"]) for p in hours] == [
        ("2026-03-02T08:00:00+00:00", 4),
        ("2026-03-02T09:00:00+00:00", 2),
        ("2026-03-02T10:00:00+00:00", 0),
    ]
    assert sum(p["conversions"] for p in day) == stats(client, campaign_id, headers)["conversions"]
    assert counters(stats(client, campaign_id, headers, bucket="day")) == counters(stats(client, campaign_id, headers))


def read_csv(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))


def test_conversions_csv(client: Any, db: Session, outcomes: dict[str, Any], headers: dict[str, str]) -> None:
    campaign, link, contacts = outcomes["campaign"], outcomes["link"], outcomes["contacts"]
    b1 = contacts["b1"]
    # b1 withdraws to `anonymous` after converting: its row stays, naming no one any more.
    response = client.patch(f"/api/v1/contacts/{b1.id}", json={"tracking": "anonymous"}, headers=headers)
    assert response.status_code == 200, response.text
    response = client.get(f"/api/v1/campaigns/{campaign.id}/conversions.csv", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="campaign-{campaign.id}-conversions.csv"'
    rows = read_csv(response.content)
    assert rows[0] == list(export.CONVERSIONS_CSV_COLUMNS)
    assert rows[0] == [
        "conversion_id",
        "occurred_at",
        "campaign_id",
        "group_id",
        "group_name",
        "contact_id",
        "email",
        "name",
        "value",
        "currency",
        "order_id",
        "source",
        "link_id",
        "event_id",
    ]
    db.commit()
    stored = db.scalars(
        select(Conversion).where(Conversion.campaign_id == campaign.id).order_by(Conversion.occurred_at, Conversion.id)
    ).all()
    a, b = outcomes["a"], outcomes["b"]
    named = {key: [str(contacts[key].id), contacts[key].email] for key in ("a1", "a2", "b3")}
    no_one = ["", ""]

    def line(when: str, group: Group, who: list[str], name: str, value: str, currency: str, order: str) -> list[str]:
        return [when, str(campaign.id), str(group.id), group.name, *who, name, value, currency, order, "api"]

    assert [r[1:-2] for r in rows[1:]] == [
        line("2026-03-02T08:01:40+00:00", a, named["a1"], "purchase", "42.5000", "EUR", "o-1"),
        line("2026-03-02T08:02:30+00:00", a, no_one, "purchase", "0.1000", "EUR", "o-3"),  # anonymous
        line("2026-03-02T08:03:20+00:00", a, named["a1"], "signup", "", "", ""),
        line("2026-03-02T08:05:00+00:00", b, named["b3"], "signup", "", "", ""),
        line("2026-03-02T09:01:40+00:00", a, named["a2"], "purchase", "10.0000", "USD", ""),
        line("2026-03-02T09:06:40+00:00", a, no_one, "purchase", "0.1000", "EUR", ""),
        line("2026-03-03T09:00:00+00:00", b, no_one, "purchase", "0.1000", "EUR", ""),  # b1, anonymous since
    ]
    assert [r[-2:] for r in rows[1:]] == [[str(link.id), stored[0].event_id]] + [
        ["", conversion.event_id] for conversion in stored[1:]
    ]
    assert [row[0] for row in rows[1:]] == [str(c.id) for c in stored]
    # Streamed in keyset chunks: chunks of 2 give the same rows.
    chunked = b"".join(export.export_conversions_csv(client.app.state.session_factory, campaign.id, chunk_rows=2))
    assert chunked == response.content


def test_conversions_csv_escapes_formulas(client: Any, db: Session, user: User, headers: dict[str, str]) -> None:
    tree = factories.make_tree(db, user)
    factories.make_conversion(db, tree["contact"], name="=HYPERLINK(1)", order_id="+1-555", occurred_at=T0)
    rows = read_csv(client.get(f"/api/v1/campaigns/{tree['campaign'].id}/conversions.csv", headers=headers).content)
    assert (rows[1][7], rows[1][10]) == ("'=HYPERLINK(1)", "'+1-555")
    empty = factories.make_campaign(db, user)
    response = client.get(f"/api/v1/campaigns/{empty.id}/conversions.csv", headers=headers)
    assert read_csv(response.content) == [list(export.CONVERSIONS_CSV_COLUMNS)]


# A/B on the conversion rate.


@pytest.fixture
def min_sample(app: FastAPI, settings: Settings) -> Iterator[Callable[[int], None]]:
    def set_to(value: int) -> None:
        app.state.settings = settings.model_copy(update={"ab_min_sample": value})

    yield set_to
    app.state.settings = settings


def converted(db: Session, group: Group, n: int) -> None:
    """The first `n` contacts of the group convert (one store call each, one commit)."""
    contacts = db.scalars(select(Contact).where(Contact.group_id == group.id).order_by(Contact.id).limit(n)).all()
    with factories.one_commit(db):
        for contact in contacts:
            factories.make_conversion(db, contact, value="5", currency="EUR")


def test_ab_on_conversions_against_scipy(
    client: Any, db: Session, user: User, headers: dict[str, str], min_sample: Any
) -> None:
    campaign = factories.make_campaign(db, user)
    control = make_arm(db, campaign, "a", 40, opened=30)
    big = make_arm(db, campaign, "b", 40, opened=10)  # fewer opens, more conversions
    small = make_arm(db, campaign, "c", 40, opened=10)
    converted(db, control, 6)
    converted(db, big, 19)
    converted(db, small, 2)
    body = stats(client, campaign.id, headers, metric="conversions")
    assert body["winner_metric"] == "conversions"
    ab_big, ab_small = group_of(body, big.id)["ab"], group_of(body, small.id)["ab"]
    assert_comparison(ab_big["conversions"], (6, 40), (19, 40), "z")
    assert_comparison(ab_small["conversions"], (6, 40), (2, 40), "fisher")  # 8 converters of 80: expected 4
    p_big, p_small = z_p((6, 40), (19, 40)), fisher_p((6, 40), (2, 40))
    assert ab_big["conversions"]["p_adjusted"] == pytest.approx(min(1, 2 * p_big), rel=1e-3)  # Holm, two arms
    assert ab_small["conversions"]["p_adjusted"] == pytest.approx(max(min(1, 2 * p_big), p_small), rel=1e-3)
    assert body["winner"] is None  # 40 contacts: below AB_MIN_SAMPLE (100)
    min_sample(40)
    assert stats(client, campaign.id, headers, metric="conversions")["winner"] == big.id
    assert stats(client, campaign.id, headers)["winner"] is None  # on opens the control is best
    assert group_of(stats(client, campaign.id, headers), big.id)["ab"] == ab_big  # the metric picks the winner only


def test_ab_on_conversions_small_groups_use_fisher(
    client: Any, db: Session, user: User, headers: dict[str, str], min_sample: Any
) -> None:
    campaign = factories.make_campaign(db, user)
    control = make_arm(db, campaign, "ctl", 10)
    arm = make_arm(db, campaign, "arm", 10)
    converted(db, control, 1)
    converted(db, arm, 7)
    min_sample(0)
    body = stats(client, campaign.id, headers, metric="conversions")
    assert_comparison(group_of(body, arm.id)["ab"]["conversions"], (1, 10), (7, 10), "fisher")
    assert body["winner"] == arm.id  # p 0.0198
    assert group_of(body, arm.id)["value_per_contact"] == {"EUR": "3.5000"}


# Deletion.


def conversions_of(db: Session, campaign: Campaign) -> list[tuple[int | None, str]]:
    db.commit()  # a new snapshot (MariaDB's REPEATABLE READ, SQLite's WAL read transaction)
    return sorted(
        db.execute(select(Conversion.contact_id, Conversion.name).where(Conversion.campaign_id == campaign.id)).all(),
        key=str,
    )


def events_of(db: Session, campaign: Campaign) -> list[int | None]:
    rows = db.scalars(select(Event.contact_id).where(Event.campaign_id == campaign.id, Event.type == "conversion"))
    return sorted(rows.all(), key=str)


def test_deleting_a_contact_or_campaign_deletes_its_conversions(
    client: Any, db: Session, outcomes: dict[str, Any], headers: dict[str, str]
) -> None:
    campaign, contacts = outcomes["campaign"], outcomes["contacts"]
    a1, a2 = contacts["a1"].id, contacts["a2"].id
    assert len(conversions_of(db, campaign)) == 7
    assert sorted(events_of(db, campaign), key=str) == sorted(
        [a1, a1, a2, None, None, contacts["b1"].id, contacts["b3"].id], key=str
    )
    assert client.delete(f"/api/v1/contacts/{a1}", headers=headers).status_code == 204
    assert [contact for contact, _ in conversions_of(db, campaign)].count(a1) == 0
    assert len(conversions_of(db, campaign)) == 5  # the anonymous conversions name no one: they stay
    assert a1 not in events_of(db, campaign)
    body = stats(client, campaign.id, headers)
    assert (body["conversions"], body["unique_converters"], body["revenue"]) == (
        5,
        3,
        {"EUR": "0.3000", "USD": "10.0000"},
    )
    assert client.delete(f"/api/v1/campaigns/{campaign.id}", headers=headers).status_code == 204
    assert conversions_of(db, campaign) == []
    assert events_of(db, campaign) == []
