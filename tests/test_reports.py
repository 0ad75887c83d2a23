"""Reports: GET /api/v1/campaigns/{id}/stats and the openings/clicks CSV exports.

Every expected number below is worked out by hand from the fixture it belongs to.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.main import create_app
from app.models import Campaign, Click, ClientKind, Contact, Group, Link, Opening, User
from app.services import reports
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error, count, parse_ts
from tests.live import live_server

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ZERO_CLIENTS = {kind.value: 0 for kind in ClientKind}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stats(client: Any, campaign_id: int, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/campaigns/{campaign_id}/stats", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def group_of(body: dict[str, Any], group_id: int) -> dict[str, Any]:
    (group,) = [g for g in body["groups"] if g["group_id"] == group_id]
    return group


def counters(body: dict[str, Any]) -> dict[str, Any]:
    """The fields shared by the campaign and its groups."""
    return {k: v for k, v in body.items() if k not in ("campaign_id", "group_id", "name", "groups", "winner", "series")}


@pytest.fixture
def ab(db: Session, user: User) -> dict[str, Any]:
    """An A/B test. Delays to the first opening: A 100, 300, 5000 s; B 1000 s (interleaved).

    A: a1 (2 pixels: 3 openings, counted once), a2 (1 gmail_proxy opening), a3 (sent a minute
       later, 1 bot opening 5000 s after), a4 (no opening). 4 contacts, 4 sent, 5 pixels.
    B: b1 (unknown at +1000 s, browser the next day), b2 (clicks without opening), b3 (failed,
       never sent, no pixel). 3 contacts, 2 sent, 2 pixels.
    C: no contact at all.
    Clicks: a1 twice, b1 once, b2 once.
    """
    campaign = factories.make_campaign(db, user, name="Spring")
    a = factories.make_group(db, campaign, name="A")
    b = factories.make_group(db, campaign, name="B")
    c = factories.make_group(db, campaign, name="C")
    sent = {"status": "sent", "scheduled_at": T0, "sent_at": T0}
    a1 = factories.make_contact(db, a, **sent)
    a2 = factories.make_contact(db, a, **sent)
    a3 = factories.make_contact(db, a, status="sent", scheduled_at=T0, sent_at=at(60))
    a4 = factories.make_contact(db, a, **sent)
    b1 = factories.make_contact(db, b, **sent)
    b2 = factories.make_contact(db, b, **sent)
    b3 = factories.make_contact(db, b, status="failed", scheduled_at=T0)
    a1p1, a1p2 = factories.make_pixel(db, a1, 1), factories.make_pixel(db, a1, 2)
    a2p, a3p, b1p = factories.make_pixel(db, a2), factories.make_pixel(db, a3), factories.make_pixel(db, b1)
    factories.make_pixel(db, a4)
    factories.make_pixel(db, b2)
    factories.make_opening(db, a1p1, opened_at=at(100), client="browser")
    factories.make_opening(db, a1p2, opened_at=at(200), client="apple_mpp")
    factories.make_opening(db, a1p1, opened_at=at(3700), client="browser")
    factories.make_opening(db, a2p, opened_at=at(300), client="gmail_proxy")
    factories.make_opening(db, a3p, opened_at=at(5060), client="bot")
    factories.make_opening(db, b1p, opened_at=at(1000), client="unknown")
    factories.make_opening(db, b1p, opened_at=at(90_000), client="browser")
    link = factories.make_link(db, campaign)
    factories.make_click(db, link, a1, clicked_at=at(150), client="browser")
    factories.make_click(db, link, a1, clicked_at=at(4000), client="browser")
    factories.make_click(db, link, b1, clicked_at=at(1100), client="browser")
    factories.make_click(db, link, b2, clicked_at=at(2000), client="unknown")
    return {
        "campaign": campaign,
        "a": a,
        "b": b,
        "c": c,
        "contacts": {"a1": a1, "a2": a2, "a3": a3, "a4": a4, "b1": b1, "b2": b2, "b3": b3},
        "pixels": {"a1p1": a1p1, "a1p2": a1p2},
        "link": link,
    }


# Stats.


def test_stats_of_an_ab_test(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    body = stats(client, ab["campaign"].id, headers)
    assert counters(body) == {
        "contacts_scheduled": 7,
        "contacts_sent": 6,
        "pixels": 7,
        "total_opens": 7,
        "unique_opens": 4,
        "open_rate": 0.6667,  # 4 / 6 sent
        "open_rate_basis": "sent",
        "clicks": 4,
        "unique_clicks": 3,
        "click_through_rate": 0.5,  # 3 / 6
        "click_to_open_rate": 0.75,  # 3 / 4
        "human_opens": 4,  # browser 3 + unknown 1
        "machine_opens": 3,  # apple_mpp, gmail_proxy, bot
        "opens_by_client": {**ZERO_CLIENTS, "browser": 3, "apple_mpp": 1, "gmail_proxy": 1, "bot": 1, "unknown": 1},
        "median_seconds_to_first_open": 650.0,  # 100, 300 | 1000 | 5000 → (300 + 1000) / 2
    }
    assert body["campaign_id"] == ab["campaign"].id
    assert "series" not in body
    assert [g["group_id"] for g in body["groups"]] == [ab["a"].id, ab["b"].id, ab["c"].id]
    assert [g["name"] for g in body["groups"]] == ["A", "B", "C"]
    assert counters(group_of(body, ab["a"].id)) == {
        "contacts_scheduled": 4,
        "contacts_sent": 4,
        "pixels": 5,
        "total_opens": 5,
        "unique_opens": 3,  # a1 opened three times through two pixels: one contact
        "open_rate": 0.75,
        "open_rate_basis": "sent",
        "clicks": 2,
        "unique_clicks": 1,
        "click_through_rate": 0.25,
        "click_to_open_rate": 0.3333,
        "human_opens": 2,
        "machine_opens": 3,
        "opens_by_client": {**ZERO_CLIENTS, "browser": 2, "apple_mpp": 1, "gmail_proxy": 1, "bot": 1},
        "median_seconds_to_first_open": 300.0,  # 100, 300, 5000 (a3: sent at +60, opened at +5060)
    }
    assert counters(group_of(body, ab["b"].id)) == {
        "contacts_scheduled": 3,
        "contacts_sent": 2,
        "pixels": 2,
        "total_opens": 2,
        "unique_opens": 1,
        "open_rate": 0.5,
        "open_rate_basis": "sent",
        "clicks": 2,
        "unique_clicks": 2,
        "click_through_rate": 1.0,
        "click_to_open_rate": 2.0,  # b2 clicked without loading images
        "human_opens": 2,
        "machine_opens": 0,
        "opens_by_client": {**ZERO_CLIENTS, "unknown": 1, "browser": 1},
        "median_seconds_to_first_open": 1000.0,
    }
    assert counters(group_of(body, ab["c"].id)) == {
        "contacts_scheduled": 0,
        "contacts_sent": 0,
        "pixels": 0,
        "total_opens": 0,
        "unique_opens": 0,
        "open_rate": 0.0,
        "open_rate_basis": "sent",
        "clicks": 0,
        "unique_clicks": 0,
        "click_through_rate": 0.0,
        "click_to_open_rate": 0.0,
        "human_opens": 0,
        "machine_opens": 0,
        "opens_by_client": ZERO_CLIENTS,
        "median_seconds_to_first_open": None,
    }
    assert body["winner"] == ab["a"].id  # 0.75 > 0.5


def test_campaign_totals_are_the_sums_of_the_groups(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    body = stats(client, ab["campaign"].id, headers)
    additive = ["contacts_scheduled", "contacts_sent", "pixels", "total_opens", "unique_opens", "clicks"]
    for field in [*additive, "unique_clicks", "human_opens", "machine_opens"]:
        assert body[field] == sum(g[field] for g in body["groups"]), field
    for kind in ClientKind:
        assert body["opens_by_client"][kind.value] == sum(g["opens_by_client"][kind.value] for g in body["groups"])


def test_admin_sees_the_stats_of_any_campaign(
    client: Any, ab: dict[str, Any], headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    assert stats(client, ab["campaign"].id, admin_headers) == stats(client, ab["campaign"].id, headers)


def test_deleting_a_pixel_removes_its_openings_from_the_stats(
    client: Any, db: Session, ab: dict[str, Any], headers: dict[str, str]
) -> None:
    pixel = ab["pixels"]["a1p2"]  # a1's second pixel: its one apple_mpp opening
    assert client.delete(f"/api/v1/pixels/{pixel.id}", headers=headers).status_code == 204
    assert count(db, Opening, pixel_id=pixel.id) == 0
    body = stats(client, ab["campaign"].id, headers)
    a = group_of(body, ab["a"].id)
    assert (a["pixels"], a["total_opens"], a["unique_opens"], a["machine_opens"]) == (4, 4, 3, 2)
    assert a["opens_by_client"]["apple_mpp"] == 0
    assert (body["pixels"], body["total_opens"], body["machine_opens"]) == (6, 6, 2)

    # a1's other pixel goes too: a1 has no opening left, a2 (300 s) and a3 (5000 s) remain.
    assert client.delete(f"/api/v1/pixels/{ab['pixels']['a1p1'].id}", headers=headers).status_code == 204
    a = group_of(stats(client, ab["campaign"].id, headers), ab["a"].id)
    assert (a["pixels"], a["total_opens"], a["unique_opens"], a["median_seconds_to_first_open"]) == (3, 2, 2, 2650.0)


def test_deleting_a_contact_or_group_updates_the_stats(
    client: Any, ab: dict[str, Any], headers: dict[str, str]
) -> None:
    assert client.delete(f"/api/v1/contacts/{ab['contacts']['b1'].id}", headers=headers).status_code == 204
    body = stats(client, ab["campaign"].id, headers)
    b = group_of(body, ab["b"].id)
    assert (b["contacts_scheduled"], b["total_opens"], b["unique_opens"], b["clicks"], b["unique_clicks"]) == (
        2,
        0,
        0,
        1,
        1,
    )
    assert b["median_seconds_to_first_open"] is None
    assert body["median_seconds_to_first_open"] == 300.0  # 100, 300, 5000
    assert client.delete(f"/api/v1/groups/{ab['a'].id}", headers=headers).status_code == 204
    body = stats(client, ab["campaign"].id, headers)
    assert [g["group_id"] for g in body["groups"]] == [ab["b"].id, ab["c"].id]
    assert (body["total_opens"], body["unique_opens"], body["winner"]) == (0, 0, None)


def test_scheduled_only_campaign_uses_the_scheduled_basis(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    early = factories.make_contact(db, group, scheduled_at=T0)
    late = factories.make_contact(db, group, scheduled_at=at(600))
    undated = factories.make_contact(db, group)  # neither sent_at nor scheduled_at
    factories.make_contact(db, group, scheduled_at=T0)
    factories.make_opening(db, factories.make_pixel(db, early), opened_at=at(120), client="browser")
    factories.make_opening(db, factories.make_pixel(db, late), opened_at=at(300), client="browser")  # before: 0
    factories.make_opening(db, factories.make_pixel(db, undated), opened_at=at(50), client="apple_mpp")
    factories.make_click(db, factories.make_link(db, campaign), early, clicked_at=at(130))
    body = stats(client, campaign.id, headers)
    assert body["contacts_sent"] == 0
    assert body["open_rate_basis"] == "scheduled"
    assert body["unique_opens"] == 3  # the undated contact counts as an opener...
    assert body["open_rate"] == 0.75  # 3 / 4 scheduled
    assert body["click_through_rate"] == 0.25
    assert body["click_to_open_rate"] == 0.3333
    # ...but not in the median: delays 120 s and 0 s (opened before its scheduled time: clamped).
    assert body["median_seconds_to_first_open"] == 60.0
    assert body["groups"][0]["open_rate_basis"] == "scheduled"
    assert body["groups"][0]["open_rate"] == 0.75
    assert body["winner"] == group.id


def test_sent_at_wins_over_scheduled_at_for_the_delay(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    contact = factories.make_contact(db, group, status="sent", scheduled_at=T0, sent_at=at(1000))
    pixel = factories.make_pixel(db, contact)
    factories.make_opening(db, pixel, opened_at=at(1234.5), client="browser")
    factories.make_opening(db, pixel, opened_at=at(1100), client="apple_mpp")  # the first one
    body = stats(client, campaign.id, headers)
    assert body["median_seconds_to_first_open"] == 100.0
    assert body["open_rate"] == 1.0


def test_median_of_an_even_and_an_odd_count(client: Any, db: Session, user: User, headers: dict[str, str]) -> None:
    campaign = factories.make_campaign(db, user)
    odd, even = factories.make_group(db, campaign, name="odd"), factories.make_group(db, campaign, name="even")
    for group, delays in ((odd, [10, 20.25, 1_000_000]), (even, [5, 7, 30, 40])):
        for delay in delays:
            contact = factories.make_contact(db, group, status="sent", sent_at=T0)
            factories.make_opening(db, factories.make_pixel(db, contact), opened_at=at(delay))
    body = stats(client, campaign.id, headers)
    assert group_of(body, odd.id)["median_seconds_to_first_open"] == 20.25
    assert group_of(body, even.id)["median_seconds_to_first_open"] == 18.5  # (7 + 30) / 2
    assert body["median_seconds_to_first_open"] == 20.25  # 5 7 10 [20.25] 30 40 1e6


def test_empty_campaign_is_all_zeros(client: Any, db: Session, user: User, headers: dict[str, str]) -> None:
    campaign = factories.make_campaign(db, user)
    body = stats(client, campaign.id, headers)
    assert body == {
        "campaign_id": campaign.id,
        "contacts_scheduled": 0,
        "contacts_sent": 0,
        "pixels": 0,
        "total_opens": 0,
        "unique_opens": 0,
        "open_rate": 0.0,
        "open_rate_basis": "scheduled",
        "clicks": 0,
        "unique_clicks": 0,
        "click_through_rate": 0.0,
        "click_to_open_rate": 0.0,
        "human_opens": 0,
        "machine_opens": 0,
        "opens_by_client": ZERO_CLIENTS,
        "median_seconds_to_first_open": None,
        "groups": [],
        "winner": None,
    }
    assert stats(client, campaign.id, headers, bucket="day")["series"] == []  # no event: no default range
    series = stats(
        client, campaign.id, headers, bucket="day", **{"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"}
    )["series"]
    assert series == [
        {"bucket_start": "2026-03-01T00:00:00+00:00", "opens": 0, "first_opens": 0, "clicks": 0},
        {"bucket_start": "2026-03-02T00:00:00+00:00", "opens": 0, "first_opens": 0, "clicks": 0},
    ]


def test_groups_without_opens_give_no_winner(client: Any, db: Session, user: User, headers: dict[str, str]) -> None:
    campaign = factories.make_campaign(db, user)
    for name in ("A", "B"):
        group = factories.make_group(db, campaign, name=name)
        factories.make_pixel(db, factories.make_contact(db, group, status="sent", sent_at=T0))
    body = stats(client, campaign.id, headers)
    assert body["winner"] is None
    assert [g["open_rate"] for g in body["groups"]] == [0.0, 0.0]
    assert body["pixels"] == 2


def test_a_tie_goes_to_the_lowest_group_id(client: Any, db: Session, user: User, headers: dict[str, str]) -> None:
    campaign = factories.make_campaign(db, user)
    groups = [factories.make_group(db, campaign, name=name) for name in ("first", "second", "third")]
    # first: 1 of 2 opened (0.5); second: 2 of 4 (0.5, more opens); third: 0 of 1.
    for group, (n, opened) in zip(groups, [(2, 1), (4, 2), (1, 0)], strict=True):
        for i in range(n):
            contact = factories.make_contact(db, group, status="sent", sent_at=T0)
            if i < opened:
                factories.make_opening(db, factories.make_pixel(db, contact), opened_at=at(10))
    body = stats(client, campaign.id, headers)
    assert [g["open_rate"] for g in body["groups"]] == [0.5, 0.5, 0.0]
    assert body["winner"] == groups[0].id


def test_the_winner_has_the_highest_rate_not_the_most_opens(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    campaign = factories.make_campaign(db, user)
    big, small = factories.make_group(db, campaign, name="big"), factories.make_group(db, campaign, name="small")
    for group, (n, opened) in ((big, (10, 4)), (small, (2, 1))):
        for i in range(n):
            contact = factories.make_contact(db, group, status="sent", sent_at=T0)
            if i < opened:
                factories.make_opening(db, factories.make_pixel(db, contact), opened_at=at(10))
    body = stats(client, campaign.id, headers)
    assert [g["unique_opens"] for g in body["groups"]] == [4, 1]
    assert body["winner"] == small.id  # 0.5 > 0.4


def test_stats_are_per_campaign(
    client: Any, db: Session, ab: dict[str, Any], user: User, headers: dict[str, str]
) -> None:
    other = factories.make_tree(db, user)  # another campaign of the same user, with one opening
    body = stats(client, ab["campaign"].id, headers)
    assert (body["total_opens"], body["contacts_scheduled"]) == (7, 7)
    assert stats(client, other["campaign"].id, headers)["total_opens"] == 1


def test_unrecognised_client_values_count_as_unknown(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    tree = factories.make_tree(db, user)  # one opening with the default client
    factories.make_opening(db, tree["pixel"], client="future_kind")
    body = stats(client, tree["campaign"].id, headers)
    assert body["opens_by_client"] == {**ZERO_CLIENTS, "unknown": 2}
    assert (body["human_opens"], body["machine_opens"]) == (2, 0)


# Series.


def test_day_series_defaults_to_the_days_of_the_events(
    client: Any, ab: dict[str, Any], headers: dict[str, str]
) -> None:
    body = stats(client, ab["campaign"].id, headers, bucket="day")
    assert body["series"] == [
        # Everything but b1's opening of the next day; first opens: a1, a2, a3, b1 (b1's second
        # opening, the next day, is not a first one).
        {"bucket_start": "2026-03-02T00:00:00+00:00", "opens": 6, "first_opens": 4, "clicks": 4},
        {"bucket_start": "2026-03-03T00:00:00+00:00", "opens": 1, "first_opens": 0, "clicks": 0},
    ]
    for point in body["series"]:
        parse_ts(point["bucket_start"])
    assert counters(body) == counters(stats(client, ab["campaign"].id, headers))  # the series changes nothing else


def test_hour_series_is_zero_filled(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    body = stats(
        client,
        ab["campaign"].id,
        headers,
        bucket="hour",
        **{"from": "2026-03-02T07:30:00Z", "to": "2026-03-02T12:00:00+00:00"},
    )
    assert body["series"] == [
        {"bucket_start": "2026-03-02T07:00:00+00:00", "opens": 0, "first_opens": 0, "clicks": 0},
        # +100 a1, +200 a1 (2nd pixel), +300 a2, +1000 b1 (first: a1, a2, b1); clicks +150, +1100, +2000.
        {"bucket_start": "2026-03-02T08:00:00+00:00", "opens": 4, "first_opens": 3, "clicks": 3},
        # +3700 a1 (not its first), +5060 a3; click +4000.
        {"bucket_start": "2026-03-02T09:00:00+00:00", "opens": 2, "first_opens": 1, "clicks": 1},
        {"bucket_start": "2026-03-02T10:00:00+00:00", "opens": 0, "first_opens": 0, "clicks": 0},
        {"bucket_start": "2026-03-02T11:00:00+00:00", "opens": 0, "first_opens": 0, "clicks": 0},
    ]


def test_hour_series_defaults(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    series = stats(client, ab["campaign"].id, headers, bucket="hour")["series"]
    # From the hour of the first event (08:00 on day 1) to the end of the hour of the last (09:00 on day 2).
    assert len(series) == 26
    assert series[0]["bucket_start"] == "2026-03-02T08:00:00+00:00"
    assert series[-1] == {"bucket_start": "2026-03-03T09:00:00+00:00", "opens": 1, "first_opens": 0, "clicks": 0}
    assert sum(p["opens"] for p in series) == 7
    assert sum(p["clicks"] for p in series) == 4
    assert sum(p["first_opens"] for p in series) == 4  # = unique_opens
    assert all(p["opens"] == p["first_opens"] == p["clicks"] == 0 for p in series[2:-1])


def test_series_from_is_inclusive_and_to_exclusive(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    # Openings at exactly +200 s (a1, 2nd pixel) and +300 s (a2).
    series = stats(
        client,
        ab["campaign"].id,
        headers,
        bucket="hour",
        **{"from": at(200).isoformat(), "to": at(300).isoformat()},
    )["series"]
    # a1's first opening (+100 s) is before `from`: no first open in the range.
    assert series == [{"bucket_start": "2026-03-02T08:00:00+00:00", "opens": 1, "first_opens": 0, "clicks": 0}]


def test_series_from_only_and_to_only(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    only_from = stats(client, ab["campaign"].id, headers, bucket="day", **{"from": "2026-03-03T00:00:00Z"})
    assert only_from["series"] == [
        {"bucket_start": "2026-03-03T00:00:00+00:00", "opens": 1, "first_opens": 0, "clicks": 0}
    ]
    only_to = stats(client, ab["campaign"].id, headers, bucket="day", **{"to": "2026-03-02T12:00:00Z"})
    assert only_to["series"] == [
        {"bucket_start": "2026-03-02T00:00:00+00:00", "opens": 6, "first_opens": 4, "clicks": 4}
    ]
    after_everything = stats(client, ab["campaign"].id, headers, bucket="day", **{"from": "2027-01-01T00:00:00Z"})
    assert after_everything["series"] == []


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"bucket": "week"}, "bucket"),
        ({"bucket": ""}, "bucket"),
        ({"bucket": "day", "from": "2026-03-02T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, "to"),
        ({"bucket": "day", "from": "2026-03-03T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, "to"),
        ({"bucket": "hour", "from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),  # > 10,000
        ({"bucket": "day", "from": "1970-01-01T00:00:00Z", "to": "9998-12-31T00:00:00Z"}, "to"),
        ({"bucket": "day", "from": "not a date"}, "from"),
        ({"bucket": "day", "from": "0001-01-01T00:00:00Z"}, "from"),
        ({"bucket": "day", "to": "99999-01-01T00:00:00Z"}, "to"),
    ],
)
def test_series_validation_is_a_422(
    client: Any, ab: dict[str, Any], headers: dict[str, str], params: dict[str, str], loc: str
) -> None:
    response = client.get(f"/api/v1/campaigns/{ab['campaign'].id}/stats", params=params, headers=headers)
    body = assert_error(response, 422, "validation_error")
    assert body["detail"][0]["loc"] == ["query", loc], body


def test_ten_thousand_buckets_are_allowed(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    params = {"bucket": "hour", "from": start.isoformat(), "to": (start + timedelta(hours=10_000)).isoformat()}
    series = stats(client, ab["campaign"].id, headers, **params)["series"]
    assert len(series) == reports.MAX_BUCKETS
    assert sum(p["opens"] for p in series) == 7
    params["to"] = (start + timedelta(hours=10_000, seconds=1)).isoformat()
    response = client.get(f"/api/v1/campaigns/{ab['campaign'].id}/stats", params=params, headers=headers)
    assert_error(response, 422, "validation_error")


def test_unknown_query_parameters_are_ignored(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    body = stats(client, ab["campaign"].id, headers, group="A", format="xml")
    assert body["total_opens"] == 7


def test_from_and_to_without_bucket_only_delimit_a_series_that_is_not_asked_for(
    client: Any, ab: dict[str, Any], headers: dict[str, str]
) -> None:
    body = stats(client, ab["campaign"].id, headers, **{"from": "2026-03-03T00:00:00Z", "to": "2026-03-01T00:00:00Z"})
    assert "series" not in body
    assert body == stats(client, ab["campaign"].id, headers)  # the stats cover the whole campaign


# Authorization.


@pytest.mark.parametrize("path", ["stats", "stats?bucket=day", "openings.csv", "clicks.csv"])
def test_another_users_campaign_is_404_like_a_missing_one(
    client: Any, ab: dict[str, Any], other_headers: dict[str, str], path: str
) -> None:
    response = client.get(f"/api/v1/campaigns/{ab['campaign'].id}/{path}", headers=other_headers)
    body = assert_error(response, 404, "not_found")
    assert client.get(f"/api/v1/campaigns/987654321/{path}", headers=other_headers).json() == body


@pytest.mark.parametrize("path", ["stats", "openings.csv", "clicks.csv"])
def test_reports_need_a_token(client: Any, ab: dict[str, Any], path: str) -> None:
    assert_error(client.get(f"/api/v1/campaigns/{ab['campaign'].id}/{path}"), 401, "not_authenticated")
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert_error(client.get(f"/api/v1/campaigns/{ab['campaign'].id}/{path}", headers=bad), 401)


@pytest.mark.parametrize("campaign_id", ["0", "-1", "abc", str(2**63)])
def test_bad_campaign_ids_are_a_422(client: Any, headers: dict[str, str], campaign_id: str) -> None:
    for path in ("stats", "openings.csv", "clicks.csv"):
        assert_error(client.get(f"/api/v1/campaigns/{campaign_id}/{path}", headers=headers), 422, "validation_error")


def test_the_reports_are_documented(app: Any) -> None:
    paths = app.openapi()["paths"]
    stats_op = paths["/api/v1/campaigns/{campaign_id}/stats"]["get"]
    assert {p["name"] for p in stats_op["parameters"]} >= {"campaign_id", "bucket", "from", "to"}
    schema = app.openapi()["components"]["schemas"]["CampaignStats"]
    assert schema["example"]["groups"]
    assert "winner" in schema["properties"]
    for kind in ("openings", "clicks"):
        op = paths[f"/api/v1/campaigns/{{campaign_id}}/{kind}.csv"]["get"]
        assert "text/csv" in op["responses"]["200"]["content"]


# CSV exports.


def read_csv(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))


def expected_openings(db: Session, campaign_id: int) -> list[list[str]]:
    db.commit()
    rows = db.execute(
        select(Opening, Contact, Group)
        .join(Contact, Contact.id == Opening.contact_id)
        .join(Group, Group.id == Contact.group_id)
        .where(Opening.campaign_id == campaign_id)
        .order_by(Opening.opened_at, Opening.id)
    ).all()
    return [
        [
            str(o.id),
            o.opened_at.isoformat(),
            str(o.campaign_id),
            str(g.id),
            g.name,
            str(c.id),
            c.email,
            str(o.pixel_id),
            o.client,
            o.ip or "",
            o.user_agent or "",
            o.event_id,
        ]
        for o, c, g in rows
    ]


def test_openings_csv_round_trip(client: Any, db: Session, ab: dict[str, Any], headers: dict[str, str]) -> None:
    response = client.get(f"/api/v1/campaigns/{ab['campaign'].id}/openings.csv", headers=headers)
    rows = read_csv(response)
    assert response.headers["content-disposition"] == (
        f'attachment; filename="campaign-{ab["campaign"].id}-openings.csv"'
    )
    assert rows[0] == list(reports.OPENINGS_CSV_COLUMNS)
    assert rows[0] == [
        "opening_id",
        "opened_at",
        "campaign_id",
        "group_id",
        "group_name",
        "contact_id",
        "email",
        "pixel_id",
        "client",
        "ip",
        "user_agent",
        "event_id",
    ]
    assert rows[1:] == expected_openings(db, ab["campaign"].id)
    assert len(rows) == 1 + 7
    assert [parse_ts(r[1]) for r in rows[1:]] == sorted(parse_ts(r[1]) for r in rows[1:])
    assert rows[1][1] == "2026-03-02T08:01:40+00:00"
    assert response.content.endswith(b"\r\n")


def test_clicks_csv_round_trip(client: Any, db: Session, ab: dict[str, Any], headers: dict[str, str]) -> None:
    response = client.get(f"/api/v1/campaigns/{ab['campaign'].id}/clicks.csv", headers=headers)
    rows = read_csv(response)
    assert response.headers["content-disposition"] == f'attachment; filename="campaign-{ab["campaign"].id}-clicks.csv"'
    assert rows[0] == list(reports.CLICKS_CSV_COLUMNS)
    assert rows[0][:9] == [
        "click_id",
        "clicked_at",
        "campaign_id",
        "group_id",
        "group_name",
        "contact_id",
        "email",
        "link_id",
        "url",
    ]
    db.commit()
    clicks = db.execute(
        select(Click, Contact, Group, Link)
        .join(Contact, Contact.id == Click.contact_id)
        .join(Group, Group.id == Contact.group_id)
        .join(Link, Link.id == Click.link_id)
        .where(Click.campaign_id == ab["campaign"].id)
        .order_by(Click.clicked_at, Click.id)
    ).all()
    assert rows[1:] == [
        [
            str(k.id),
            k.clicked_at.isoformat(),
            str(k.campaign_id),
            str(g.id),
            g.name,
            str(c.id),
            c.email,
            str(k.link_id),
            link.url,
            k.client,
            k.ip or "",
            k.user_agent or "",
            k.event_id,
        ]
        for k, c, g, link in clicks
    ]
    assert [r[5] for r in rows[1:]] == [str(ab["contacts"][n].id) for n in ("a1", "b1", "b2", "a1")]


def test_csv_quotes_commas_quotes_newlines_and_unicode(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign, name='Été, "ünïcødé" 😀')
    contact = factories.make_contact(db, group, email="zoë@example.com")
    agent = 'Mozilla/5.0 (X11; Linux, "quoted")\nsecond line\r\nthird, line'
    factories.make_opening(db, factories.make_pixel(db, contact), user_agent=agent, ip="2001:db8::1", opened_at=T0)
    factories.make_click(db, factories.make_link(db, campaign, 'https://example.com/?a=1,2&b="x"'), contact)
    response = client.get(f"/api/v1/campaigns/{campaign.id}/openings.csv", headers=headers)
    _header, row = read_csv(response)
    assert row[4] == 'Été, "ünïcødé" 😀'
    assert row[6] == "zoë@example.com"
    assert row[9] == "2001:db8::1"
    assert row[10] == agent
    assert b'"Mozilla/5.0 (X11; Linux, ""quoted"")\nsecond line\r\nthird, line"' in response.content
    assert "Été".encode() in response.content  # UTF-8, not escaped
    _, click = read_csv(client.get(f"/api/v1/campaigns/{campaign.id}/clicks.csv", headers=headers))
    assert click[8] == 'https://example.com/?a=1,2&b="x"'


@pytest.mark.parametrize("text", ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_guards_against_formula_injection(
    client: Any, db: Session, user: User, headers: dict[str, str], text: str
) -> None:
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign, name=text)
    contact = factories.make_contact(db, group)
    factories.make_opening(db, factories.make_pixel(db, contact), user_agent=text)
    factories.make_click(db, factories.make_link(db, campaign), contact, user_agent=text)
    _, row = read_csv(client.get(f"/api/v1/campaigns/{campaign.id}/openings.csv", headers=headers))
    assert row[4] == "'" + text  # group name
    assert row[10] == "'" + text  # user agent
    _, click = read_csv(client.get(f"/api/v1/campaigns/{campaign.id}/clicks.csv", headers=headers))
    assert click[4] == "'" + text
    assert click[11] == "'" + text


def test_csv_cell_leaves_harmless_values_alone() -> None:
    assert reports.csv_cell("Mozilla/5.0 =x") == "Mozilla/5.0 =x"
    assert reports.csv_cell("a-b") == "a-b"
    assert reports.csv_cell(None) == ""
    assert reports.csv_cell(42) == 42
    assert reports.csv_cell(T0) == "2026-03-02T08:00:00+00:00"


@pytest.mark.parametrize("kind", ["openings", "clicks"])
def test_csv_of_an_empty_campaign_is_the_header_row(
    client: Any, db: Session, user: User, headers: dict[str, str], kind: str
) -> None:
    campaign = factories.make_campaign(db, user)
    response = client.get(f"/api/v1/campaigns/{campaign.id}/{kind}.csv", headers=headers)
    columns = reports.OPENINGS_CSV_COLUMNS if kind == "openings" else reports.CLICKS_CSV_COLUMNS
    assert read_csv(response) == [list(columns)]
    assert response.content == (",".join(columns) + "\r\n").encode()


def test_csv_reads_in_keyset_chunks_without_losing_ties(
    client: Any, db: Session, user: User, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 2 rows over 7 openings, 3 of them at the very same instant: every row exactly once."""
    monkeypatch.setattr(reports, "CSV_CHUNK_ROWS", 2)
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    pixel = factories.make_pixel(db, factories.make_contact(db, group))
    for seconds in (50, 10, 10, 10, 30, 70, 20):
        factories.make_opening(db, pixel, opened_at=at(seconds))
    other = factories.make_tree(db, user)  # another campaign's opening is not exported
    rows = read_csv(client.get(f"/api/v1/campaigns/{campaign.id}/openings.csv", headers=headers))[1:]
    assert rows == expected_openings(db, campaign.id)
    assert len({r[0] for r in rows}) == 7
    assert str(other["opening"].id) not in {r[0] for r in rows}


@pytest.mark.processes
def test_csv_streams_through_a_real_server(
    settings: Settings, db: Session, user: User, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over uvicorn the body arrives in pieces (chunked, no Content-Length) while the export's own
    session reads the next chunk: the request's session is long closed by then."""
    monkeypatch.setattr(reports, "CSV_CHUNK_ROWS", 3)
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    for i in range(10):
        pixel = factories.make_pixel(db, factories.make_contact(db, group))
        factories.make_opening(db, pixel, opened_at=at(i), user_agent=f"agent {i}")
    path = f"/api/v1/campaigns/{campaign.id}/openings.csv"
    with (
        live_server(create_app(settings)) as base,
        httpx.Client(base_url=base) as http,
        http.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert "content-length" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        pieces = list(response.iter_raw())
    body = b"".join(pieces)
    rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert rows[1:] == expected_openings(db, campaign.id)
    assert [r[10] for r in rows[1:]] == [f"agent {i}" for i in range(10)]


def test_reports_write_nothing(client: Any, db: Session, ab: dict[str, Any], headers: dict[str, str]) -> None:
    before = {model.__name__: count(db, model) for model in (Campaign, Group, Contact, Opening, Click)}
    for path in ("stats?bucket=hour", "openings.csv", "clicks.csv"):
        assert client.get(f"/api/v1/campaigns/{ab['campaign'].id}/{path}", headers=headers).status_code == 200
    assert {model.__name__: count(db, model) for model in (Campaign, Group, Contact, Opening, Click)} == before
