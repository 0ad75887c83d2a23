"""Reports: the time series of the stats (?bucket=hour|day, from/to): buckets, bounds, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.models import User
from app.services.series import MAX_BUCKETS
from tests.helpers import assert_error, parse_ts
from tests.support.reports import at, counters, make_ab, stats


@pytest.fixture
def ab(db: Session, user: User) -> dict[str, Any]:
    """The A/B campaign of tests/support/reports.make_ab (its docstring has the numbers)."""
    return make_ab(db, user)


# Series.


def test_day_series_defaults_to_the_days_of_the_events(
    client: Any, ab: dict[str, Any], headers: dict[str, str]
) -> None:
    body = stats(client, ab["campaign"].id, headers, bucket="day")
    assert body["series"] == [
        # Everything but b1's opening of the next day; first opens: a1, a2, a3, b1 (b1's second
        # opening, the next day, is not a first one).
        {"bucket_start": "2026-03-02T00:00:00+00:00", "opens": 6, "first_opens": 4, "clicks": 4, "conversions": 0},
        {"bucket_start": "2026-03-03T00:00:00+00:00", "opens": 1, "first_opens": 0, "clicks": 0, "conversions": 0},
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
        {"bucket_start": "2026-03-02T07:00:00+00:00", "opens": 0, "first_opens": 0, "clicks": 0, "conversions": 0},
        # +100 a1, +200 a1 (2nd pixel), +300 a2, +1000 b1 (first: a1, a2, b1); clicks +150, +1100, +2000.
        {"bucket_start": "2026-03-02T08:00:00+00:00", "opens": 4, "first_opens": 3, "clicks": 3, "conversions": 0},
        # +3700 a1 (not its first), +5060 a3; click +4000.
        {"bucket_start": "2026-03-02T09:00:00+00:00", "opens": 2, "first_opens": 1, "clicks": 1, "conversions": 0},
        {"bucket_start": "2026-03-02T10:00:00+00:00", "opens": 0, "first_opens": 0, "clicks": 0, "conversions": 0},
        {"bucket_start": "2026-03-02T11:00:00+00:00", "opens": 0, "first_opens": 0, "clicks": 0, "conversions": 0},
    ]


def test_hour_series_defaults(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    series = stats(client, ab["campaign"].id, headers, bucket="hour")["series"]
    # From the hour of the first event (08:00 on day 1) to the end of the hour of the last (09:00 on day 2).
    assert len(series) == 26
    assert series[0]["bucket_start"] == "2026-03-02T08:00:00+00:00"
    assert series[-1] == {
        "bucket_start": "2026-03-03T09:00:00+00:00",
        "opens": 1,
        "first_opens": 0,
        "clicks": 0,
        "conversions": 0,
    }
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
    assert series == [
        {"bucket_start": "2026-03-02T08:00:00+00:00", "opens": 1, "first_opens": 0, "clicks": 0, "conversions": 0}
    ]


def test_series_from_only_and_to_only(client: Any, ab: dict[str, Any], headers: dict[str, str]) -> None:
    only_from = stats(client, ab["campaign"].id, headers, bucket="day", **{"from": "2026-03-03T00:00:00Z"})
    assert only_from["series"] == [
        {"bucket_start": "2026-03-03T00:00:00+00:00", "opens": 1, "first_opens": 0, "clicks": 0, "conversions": 0}
    ]
    only_to = stats(client, ab["campaign"].id, headers, bucket="day", **{"to": "2026-03-02T12:00:00Z"})
    assert only_to["series"] == [
        {"bucket_start": "2026-03-02T00:00:00+00:00", "opens": 6, "first_opens": 4, "clicks": 4, "conversions": 0}
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
    assert len(series) == MAX_BUCKETS
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
