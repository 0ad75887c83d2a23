"""Series buckets at the edges of the allowed date range (1970..9998): integer arithmetic only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from app.models import User
from app.schemas.reports import BUCKET_SECONDS
from app.services.series import _ceil, _floor
from tests import factories

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LAST = datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=LAST.replace(tzinfo=None), timezones=st.just(UTC))


@settings(max_examples=500, deadline=None)
@given(moment=moments, step=st.sampled_from(sorted(BUCKET_SECONDS.values())))
@example(moment=LAST, step=86400)
@example(moment=LAST, step=3600)
@example(moment=EPOCH, step=86400)
def test_floor_is_the_start_of_the_bucket_holding_the_moment(moment: datetime, step: int) -> None:
    floor = _floor(moment, step)
    assert floor <= moment < floor + timedelta(seconds=step)
    assert (floor - EPOCH) % timedelta(seconds=step) == timedelta(0)
    ceil = _ceil(moment, step)
    assert ceil == floor if moment == floor else ceil == floor + timedelta(seconds=step)


def test_day_series_ending_at_the_last_allowed_microsecond(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    tree = factories.make_tree(db, user)
    factories.make_opening(db, tree["pixel"], opened_at=LAST)
    response = client.get(
        f"/api/v1/campaigns/{tree['campaign'].id}/stats",
        params={"bucket": "day", "from": "9998-12-01T00:00:00Z"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    series = response.json()["series"]
    assert len(series) == 31
    assert series[0]["bucket_start"] == "9998-12-01T00:00:00+00:00"
    assert series[-1]["bucket_start"] == "9998-12-31T00:00:00+00:00"
    assert series[-1]["opens"] == 1
    assert sum(point["opens"] for point in series) == 1


def test_an_opening_in_the_last_microsecond_of_an_hour_counts_in_that_hour(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    tree = factories.make_tree(db, user)
    factories.make_opening(db, tree["pixel"], opened_at=datetime(2026, 3, 2, 10, 59, 59, 999900, tzinfo=UTC))
    response = client.get(
        f"/api/v1/campaigns/{tree['campaign'].id}/stats",
        params={"bucket": "hour", "from": "2026-03-02T10:00:00Z", "to": "2026-03-02T12:00:00Z"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert [point["opens"] for point in response.json()["series"]] == [1, 0]
