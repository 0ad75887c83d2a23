"""Reports: GET /api/v1/campaigns/{id}/stats, who may read the reports, and that they write nothing.

Every expected number below is worked out by hand from the fixture it belongs to. The time
series: tests/test_report_series.py; the CSV exports: tests/test_report_csv.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.models import Campaign, Click, ClientKind, Contact, Group, Opening, User
from tests import factories
from tests.helpers import assert_error, count
from tests.support.reports import NO_CONVERSIONS, T0, ZERO_CLIENTS, at, counters, group_of, make_ab, stats

# A group (or campaign) with nothing counted: every figure 0, no median.
ZERO_COUNTERS: dict[str, Any] = {
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
    "unknown_opens": 0,
    "opens_by_client": ZERO_CLIENTS,
    "human_unique_opens": 0,
    "inferred_opens": 0,
    "human_open_rate": 0.0,
    "human_clicks": 0,
    "scanner_clicks": 0,
    "human_unique_clicks": 0,
    "human_click_through_rate": 0.0,
    "median_seconds_to_first_open": None,
    **NO_CONVERSIONS,
}


@pytest.fixture
def ab(db: Session, user: User) -> dict[str, Any]:
    """The A/B campaign of tests/support/reports.make_ab (its docstring has the numbers)."""
    return make_ab(db, user)


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
        "human_opens": 3,  # browser only
        "machine_opens": 3,  # apple_mpp, gmail_proxy, bot
        "unknown_opens": 1,
        "opens_by_client": {**ZERO_CLIENTS, "browser": 3, "apple_mpp": 1, "gmail_proxy": 1, "bot": 1, "unknown": 1},
        "human_unique_opens": 2,  # a1, b1 (browser openings)
        "inferred_opens": 0,  # b2's click is by an unknown client: no human click
        "human_open_rate": 0.3333,  # 2 / 6
        "human_clicks": 3,  # a1 twice, b1
        "scanner_clicks": 0,
        "human_unique_clicks": 2,
        "human_click_through_rate": 0.3333,
        "median_seconds_to_first_open": 650.0,  # 100, 300 | 1000 | 5000 → (300 + 1000) / 2
        **NO_CONVERSIONS,
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
        "unknown_opens": 0,
        "opens_by_client": {**ZERO_CLIENTS, "browser": 2, "apple_mpp": 1, "gmail_proxy": 1, "bot": 1},
        "human_unique_opens": 1,
        "inferred_opens": 0,
        "human_open_rate": 0.25,
        "human_clicks": 2,
        "scanner_clicks": 0,
        "human_unique_clicks": 1,
        "human_click_through_rate": 0.25,
        "median_seconds_to_first_open": 300.0,  # 100, 300, 5000 (a3: sent at +60, opened at +5060)
        **NO_CONVERSIONS,
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
        "human_opens": 1,
        "machine_opens": 0,
        "unknown_opens": 1,
        "opens_by_client": {**ZERO_CLIENTS, "unknown": 1, "browser": 1},
        "human_unique_opens": 1,
        "inferred_opens": 0,
        "human_open_rate": 0.5,
        "human_clicks": 1,
        "scanner_clicks": 0,
        "human_unique_clicks": 1,
        "human_click_through_rate": 0.5,
        "median_seconds_to_first_open": 1000.0,
        **NO_CONVERSIONS,
    }
    assert counters(group_of(body, ab["c"].id)) == ZERO_COUNTERS
    # A (the first group) is the control; B and C are compared with it (tests/test_report_ab.py).
    assert (body["control_group_id"], body["winner_metric"]) == (ab["a"].id, "opens")
    assert [g["ab"] is None for g in body["groups"]] == [True, False, False]
    assert body["winner"] is None  # 0.5 against 0.25, but 2 and 4 contacts: far below AB_MIN_SAMPLE


def test_campaign_totals_are_the_sums_of_the_groups(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    body = stats(client, ab["campaign"].id, headers)
    additive = ["contacts_scheduled", "contacts_sent", "pixels", "total_opens", "unique_opens", "clicks"]
    humans = ["human_opens", "machine_opens", "unknown_opens", "human_unique_opens", "inferred_opens"]
    for field in [*additive, "unique_clicks", *humans, "human_clicks", "scanner_clicks", "human_unique_clicks"]:
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
    assert (body["control_group_id"], body["groups"][0]["ab"], body["winner"]) == (group.id, None, None)


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
        **ZERO_COUNTERS,
        "open_rate_basis": "scheduled",
        "groups": [],
        "control_group_id": None,
        "winner_metric": "opens",
        "winner": None,
    }
    assert stats(client, campaign.id, headers, bucket="day")["series"] == []  # no event: no default range
    series = stats(
        client, campaign.id, headers, bucket="day", **{"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"}
    )["series"]
    assert series == [
        {"bucket_start": "2026-03-01T00:00:00+00:00", "opens": 0, "first_opens": 0, "clicks": 0, "conversions": 0},
        {"bucket_start": "2026-03-02T00:00:00+00:00", "opens": 0, "first_opens": 0, "clicks": 0, "conversions": 0},
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


# What decides `winner` (significance against the control, AB_MIN_SAMPLE): tests/test_report_ab.py.


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
    assert (body["human_opens"], body["machine_opens"], body["unknown_opens"]) == (0, 0, 2)
    assert (body["human_unique_opens"], body["human_open_rate"]) == (0, 0.0)


# Authorization.


@pytest.mark.parametrize("path", ["stats", "stats?bucket=day", "openings.csv", "clicks.csv", "conversions.csv"])
def test_another_users_campaign_is_404_like_a_missing_one(
    client: Any, ab: dict[str, Any], other_headers: dict[str, str], path: str
) -> None:
    response = client.get(f"/api/v1/campaigns/{ab['campaign'].id}/{path}", headers=other_headers)
    body = assert_error(response, 404, "not_found")
    assert client.get(f"/api/v1/campaigns/987654321/{path}", headers=other_headers).json() == body


@pytest.mark.parametrize("path", ["stats", "openings.csv", "clicks.csv", "conversions.csv"])
def test_reports_need_a_token(client: Any, ab: dict[str, Any], path: str) -> None:
    assert_error(client.get(f"/api/v1/campaigns/{ab['campaign'].id}/{path}"), 401, "not_authenticated")
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert_error(client.get(f"/api/v1/campaigns/{ab['campaign'].id}/{path}", headers=bad), 401)


@pytest.mark.parametrize("campaign_id", ["0", "-1", "abc", str(2**63)])
def test_bad_campaign_ids_are_a_422(client: Any, headers: dict[str, str], campaign_id: str) -> None:
    for path in ("stats", "openings.csv", "clicks.csv", "conversions.csv"):
        assert_error(client.get(f"/api/v1/campaigns/{campaign_id}/{path}", headers=headers), 422, "validation_error")


def test_the_reports_are_documented(app: Any) -> None:
    paths = app.openapi()["paths"]
    stats_op = paths["/api/v1/campaigns/{campaign_id}/stats"]["get"]
    assert {p["name"] for p in stats_op["parameters"]} >= {"campaign_id", "bucket", "from", "to"}
    schema = app.openapi()["components"]["schemas"]["CampaignStats"]
    assert schema["example"]["groups"]
    assert "winner" in schema["properties"]
    for kind in ("openings", "clicks", "conversions"):
        op = paths[f"/api/v1/campaigns/{{campaign_id}}/{kind}.csv"]["get"]
        assert "text/csv" in op["responses"]["200"]["content"]


def test_reports_write_nothing(client: Any, db: Session, ab: dict[str, Any], headers: dict[str, str]) -> None:
    before = {model.__name__: count(db, model) for model in (Campaign, Group, Contact, Opening, Click)}
    for path in ("stats?bucket=hour", "openings.csv", "clicks.csv", "conversions.csv"):
        assert client.get(f"/api/v1/campaigns/{ab['campaign'].id}/{path}", headers=headers).status_code == 200
    assert {model.__name__: count(db, model) for model in (Campaign, Group, Contact, Opening, Click)} == before
