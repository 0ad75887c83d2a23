"""Reports: the openings/clicks CSV exports: round trips, quoting, formula injection, streaming."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.main import create_app
from app.models import Click, Contact, Group, Link, Opening, User
from app.services import export
from app.settings import Settings
from tests import factories
from tests.helpers import parse_ts
from tests.live import live_server
from tests.support.reports import T0, at, make_ab


@pytest.fixture
def ab(db: Session, user: User) -> dict[str, Any]:
    """The A/B campaign of tests/support/reports.make_ab (its docstring has the numbers)."""
    return make_ab(db, user)


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
            o.reason,
        ]
        for o, c, g in rows
    ]


def test_openings_csv_round_trip(client: Any, db: Session, ab: dict[str, Any], headers: dict[str, str]) -> None:
    response = client.get(f"/api/v1/campaigns/{ab['campaign'].id}/openings.csv", headers=headers)
    rows = read_csv(response)
    assert response.headers["content-disposition"] == (
        f'attachment; filename="campaign-{ab["campaign"].id}-openings.csv"'
    )
    assert rows[0] == list(export.OPENINGS_CSV_COLUMNS)
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
        "reason",
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
    assert rows[0] == list(export.CLICKS_CSV_COLUMNS)
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
            k.reason,
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
    assert export.csv_cell("Mozilla/5.0 =x") == "Mozilla/5.0 =x"
    assert export.csv_cell("a-b") == "a-b"
    assert export.csv_cell(None) == ""
    assert export.csv_cell(42) == 42
    assert export.csv_cell(T0) == "2026-03-02T08:00:00+00:00"


@pytest.mark.parametrize("kind", ["openings", "clicks"])
def test_csv_of_an_empty_campaign_is_the_header_row(
    client: Any, db: Session, user: User, headers: dict[str, str], kind: str
) -> None:
    campaign = factories.make_campaign(db, user)
    response = client.get(f"/api/v1/campaigns/{campaign.id}/{kind}.csv", headers=headers)
    columns = export.OPENINGS_CSV_COLUMNS if kind == "openings" else export.CLICKS_CSV_COLUMNS
    assert read_csv(response) == [list(columns)]
    assert response.content == (",".join(columns) + "\r\n").encode()


def test_csv_reads_in_keyset_chunks_without_losing_ties(
    client: Any, db: Session, user: User, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 2 rows over 7 openings, 3 of them at the very same instant: every row exactly once."""
    monkeypatch.setattr(export, "CSV_CHUNK_ROWS", 2)
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
    monkeypatch.setattr(export, "CSV_CHUNK_ROWS", 3)
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
