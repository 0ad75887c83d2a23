"""Human, machine and unknown figures in the stats (issue #12, part 3), and the counters behind them
(contact_stats.human_clicks/machine_clicks; group_counts.human_openers, inferred_openers,
human_clickers) kept exact on every write path: flushes, ORM statements, the API, the ingest, the
retention purge, and a rebuild. Every test also ends with the suite's drift check (tests/conftest.py).

Every expected number is worked out by hand from the fixture it belongs to.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text, update
from sqlalchemy.orm import Session

from app.models import Click, Contact, GroupCounts, User
from app.services.retention import purge
from app.tracking.events import CLICK, OPEN, Event
from app.tracking.ingest import store_events
from tests import factories
from tests.helpers import counter_drift, reload
from tests.support.reports import T0, ZERO_CLIENTS, at, group_of, stats

HUMAN_FIELDS = (
    "human_opens",
    "machine_opens",
    "unknown_opens",
    "unique_opens",
    "human_unique_opens",
    "inferred_opens",
    "clicks",
    "human_clicks",
    "scanner_clicks",
    "unique_clicks",
    "human_unique_clicks",
)


def human(body: dict[str, Any]) -> tuple[int, ...]:
    return tuple(body[name] for name in HUMAN_FIELDS)


def assert_no_drift(engine: Engine) -> None:
    """The counters as committed equal a recompute from the rows (the recompute is rolled back)."""
    with engine.connect() as conn:
        drift = counter_drift(conn)
        conn.rollback()
    assert drift == []


@pytest.fixture
def mix(db: Session, user: User) -> dict[str, Any]:
    """One group of six sent contacts:
    c1: 2 browser openings + 1 apple_mpp, 1 browser click        → human opener, human clicker
    c2: no opening, 1 browser click (images off)                 → inferred opener, human clicker
    c3: 1 unknown opening, 1 scanner click                       → opener, not a human one
    c4: 1 apple_mpp opening, 1 scanner click + 1 bot click       → machine only
    c5: 1 unknown click                                          → a clicker, not a human one
    c6: nothing.
    """
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign, name="all")
    link = factories.make_link(db, campaign)
    c = [factories.make_contact(db, group, status="sent", sent_at=T0) for _ in range(6)]
    pixels = [factories.make_pixel(db, contact) for contact in c]
    for i, client in [(0, "browser"), (0, "browser"), (0, "apple_mpp"), (2, "unknown"), (3, "apple_mpp")]:
        factories.make_opening(db, pixels[i], opened_at=at(60), client=client)
    clicks = {}
    for i, client in [(0, "browser"), (1, "browser"), (2, "scanner"), (3, "scanner"), (3, "bot"), (4, "unknown")]:
        clicks[(i, client)] = factories.make_click(db, link, c[i], clicked_at=at(120), client=client)
    return {"campaign": campaign, "group": group, "link": link, "c": c, "pixels": pixels, "clicks": clicks}


def test_human_machine_and_unknown_are_separate_figures(
    client: Any, mix: dict[str, Any], headers: dict[str, str]
) -> None:
    body = stats(client, mix["campaign"].id, headers)
    assert body["total_opens"] == 5
    assert body["opens_by_client"] == {**ZERO_CLIENTS, "browser": 2, "apple_mpp": 2, "unknown": 1}
    assert (body["human_opens"], body["machine_opens"], body["unknown_opens"]) == (2, 2, 1)  # unknown is not human
    assert (body["unique_opens"], body["human_unique_opens"], body["inferred_opens"]) == (3, 2, 1)  # c1 c3 c4 | c1 c2
    assert (body["clicks"], body["human_clicks"], body["scanner_clicks"]) == (6, 2, 3)  # + 1 unknown click
    assert (body["unique_clicks"], body["human_unique_clicks"]) == (5, 2)
    assert (body["open_rate"], body["human_open_rate"]) == (0.5, 0.3333)  # 3 / 6, 2 / 6
    assert (body["click_through_rate"], body["human_click_through_rate"]) == (0.8333, 0.3333)
    assert human(group_of(body, mix["group"].id)) == human(body)


def test_inferred_opens_follow_the_clicks_and_openings(
    client: Any, db: Session, engine: Engine, mix: dict[str, Any], headers: dict[str, str]
) -> None:
    campaign = mix["campaign"]
    # c2's browser opening arrives after all: no longer inferred, still one human opener.
    opening = factories.make_opening(db, mix["pixels"][1], opened_at=at(30), client="browser")
    body = stats(client, campaign.id, headers)
    assert (body["human_opens"], body["human_unique_opens"], body["inferred_opens"]) == (3, 2, 0)
    # Reclassified through the API as a proxy's prefetch: c2 is inferred again.
    response = client.patch(f"/api/v1/openings/{opening.id}", json={"client": "gmail_proxy"}, headers=headers)
    assert response.status_code == 200, response.text
    body = stats(client, campaign.id, headers)
    assert (body["machine_opens"], body["human_unique_opens"], body["inferred_opens"]) == (3, 2, 1)
    # c2's click turns out to be a scanner's (an ORM edit): c2 is no human opener at all.
    click = reload(db, Click, mix["clicks"][(1, "browser")].id)
    click.client = "scanner"
    db.commit()
    body = stats(client, campaign.id, headers)
    assert (body["human_clicks"], body["scanner_clicks"], body["human_unique_clicks"]) == (1, 4, 1)
    assert (body["human_unique_opens"], body["inferred_opens"], body["human_open_rate"]) == (1, 0, 0.1667)
    # An ORM UPDATE statement reclassifies every scanner click as a person's: c2 and c3 become
    # inferred openers (c3's opening is unknown), c4 a human opener through its click too.
    db.execute(
        update(Click).where(Click.campaign_id == campaign.id, Click.client == "scanner").values(client="browser")
    )
    db.commit()
    body = stats(client, campaign.id, headers)
    assert (body["human_clicks"], body["scanner_clicks"], body["human_unique_clicks"]) == (4, 1, 4)
    assert (body["human_unique_opens"], body["inferred_opens"]) == (4, 3)  # c1 | c2 c3 c4
    assert_no_drift(engine)


def test_moves_and_deletes_move_the_human_counters(
    client: Any, db: Session, engine: Engine, mix: dict[str, Any], headers: dict[str, str]
) -> None:
    campaign, (c1, c2, c3, *_rest) = mix["campaign"], mix["c"]
    other = factories.make_group(db, campaign, name="other")
    # c2 (inferred opener, human clicker) moves to another group through the API.
    response = client.patch(f"/api/v1/contacts/{c2.id}", json={"group_id": other.id}, headers=headers)
    assert response.status_code == 200, response.text
    body = stats(client, campaign.id, headers)
    moved = group_of(body, other.id)
    assert (moved["human_unique_opens"], moved["inferred_opens"], moved["human_unique_clicks"]) == (1, 1, 1)
    assert (moved["human_clicks"], moved["contacts_sent"], moved["human_open_rate"]) == (1, 1, 1.0)
    stay = group_of(body, mix["group"].id)
    assert (stay["human_unique_opens"], stay["inferred_opens"], stay["human_clicks"]) == (1, 0, 1)
    assert human(body) == tuple(a + b for a, b in zip(human(stay), human(moved), strict=True))
    # c1 goes (API): its human opening, clicks and its place among the human openers with it.
    assert client.delete(f"/api/v1/contacts/{c1.id}", headers=headers).status_code == 204
    body = stats(client, campaign.id, headers)
    assert (body["human_opens"], body["human_unique_opens"], body["human_clicks"], body["scanner_clicks"]) == (
        0,
        1,
        1,
        3,
    )
    # The link goes (API): every click with it (ON DELETE CASCADE); c2 is no opener any more.
    assert client.delete(f"/api/v1/links/{mix['link'].id}", headers=headers).status_code == 204
    body = stats(client, campaign.id, headers)
    assert (body["clicks"], body["human_clicks"], body["scanner_clicks"], body["human_unique_clicks"]) == (0, 0, 0, 0)
    assert (body["human_unique_opens"], body["inferred_opens"]) == (0, 0)
    assert body["unknown_opens"] == 1  # c3's
    # The other group goes: nothing of it is left to count.
    assert client.delete(f"/api/v1/groups/{other.id}", headers=headers).status_code == 204
    assert [g["group_id"] for g in stats(client, campaign.id, headers)["groups"]] == [mix["group"].id]
    assert reload(db, Contact, c3.id) is not None
    assert_no_drift(engine)


def test_the_ingest_counts_human_and_scanner_clicks(
    client: Any, db: Session, engine: Engine, user: User, headers: dict[str, str]
) -> None:
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    link = factories.make_link(db, campaign)
    c1, c2 = (factories.make_contact(db, group, status="sent", sent_at=T0) for _ in range(2))
    pixel = factories.make_pixel(db, c1)
    ms = int(at(600).timestamp() * 1000)

    def event(kind: str, target: int, contact: int, client_class: str) -> tuple[str, Event]:
        return "", Event(kind, target, contact, ms, client_class, "", "", uuid.uuid4().hex)

    # Two batches, as the worker writes them: a scanner, then the person (images off), then
    # c1 opens through a proxy and clicks, unknown.
    store_events(engine, [event(CLICK, link.id, c2.id, "scanner"), event(CLICK, link.id, c2.id, "bot")])
    body = stats(client, campaign.id, headers)
    assert (body["clicks"], body["scanner_clicks"], body["human_unique_opens"], body["unique_clicks"]) == (2, 2, 0, 1)
    store_events(
        engine,
        [
            event(CLICK, link.id, c2.id, "browser"),
            event(OPEN, pixel.id, 0, "apple_mpp"),
            event(CLICK, link.id, c1.id, "unknown"),
            event(CLICK, link.id, c2.id, "browser"),
        ],
    )
    body = stats(client, campaign.id, headers)
    assert human(body) == (0, 1, 0, 1, 1, 1, 5, 2, 2, 2, 1)
    db.commit()
    db.expire_all()
    counts = db.get(GroupCounts, (campaign.id, group.id))
    assert counts is not None
    assert (counts.human_clicks, counts.machine_clicks, counts.human_openers) == (2, 2, 1)
    assert (counts.inferred_openers, counts.human_clickers, counts.clickers) == (1, 1, 2)
    assert_no_drift(engine)


def test_the_retention_purge_takes_clicks_off_the_human_counters(
    client: Any, db: Session, engine: Engine, mix: dict[str, Any], headers: dict[str, str]
) -> None:
    recent = at(10 * 86400)
    factories.make_click(db, mix["link"], mix["c"][2], clicked_at=recent, client="browser")  # c3: inferred
    done = purge(engine, at(86400), batch_size=2)  # every opening and click of the fixture, not the recent one
    assert done == {"openings": 5, "clicks": 6}
    body = stats(client, mix["campaign"].id, headers)
    assert human(body) == (0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1)
    assert_no_drift(engine)
    purge(engine, recent + timedelta(seconds=1))
    assert human(stats(client, mix["campaign"].id, headers)) == (0,) * len(HUMAN_FIELDS)


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("contact_stats", "human_clicks"),
        ("contact_stats", "machine_clicks"),
        ("group_counts", "human_clicks"),
        ("group_counts", "machine_clicks"),
        ("group_counts", "human_openers"),
        ("group_counts", "inferred_openers"),
        ("group_counts", "human_clickers"),
    ],
)
def test_the_drift_check_covers_the_new_counters(engine: Engine, mix: dict[str, Any], table: str, column: str) -> None:
    """A write path that forgot one of them would fail the suite: the check sees each column."""
    with engine.connect() as conn:
        assert counter_drift(conn) == []
        conn.rollback()
        conn.execute(text(f"UPDATE {table} SET {column} = {column} + 1"))  # noqa: S608 (names from the list above)
        drift = counter_drift(conn)
        conn.rollback()
    assert drift, (table, column)
    assert all(line.startswith("contact " if table == "contact_stats" else "group ") for line in drift), drift


def test_machine_classes_of_clicks_are_all_scanner_clicks(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    """scanner_clicks counts every machine class (a proxy or a bot following a link is no person),
    human_clicks only `browser`; an unrecognised value is in neither, as for openings."""
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    link = factories.make_link(db, campaign)
    contact = factories.make_contact(db, group)
    classes = ["apple_mpp", "gmail_proxy", "outlook_proxy", "yahoo_proxy", "other_proxy", "scanner", "bot"]
    for client_class in [*classes, "browser", "unknown", "future_kind"]:
        factories.make_click(db, link, contact, clicked_at=T0, client=client_class)
    body = stats(client, campaign.id, headers)
    assert (body["clicks"], body["human_clicks"], body["scanner_clicks"]) == (10, 1, 7)
    assert (body["open_rate_basis"], body["human_unique_opens"], body["human_open_rate"]) == ("scheduled", 1, 1.0)
