"""GET /api/v1/campaigns/{id}/sendsheet (issue #13 §2): each contact's pixel and tracked link URLs,
as CSV or NDJSON, streamed; missing pixels created as the render creates them."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Campaign, Link, Pixel, User
from app.services import sendprep
from app.settings import Settings
from app.tracking.tokens import TokenCodec
from app.tracking.urls import TrackingUrls
from tests import factories
from tests.helpers import assert_error, count

COLUMNS = ["contact_id", "email", "name", "scheduled_at", "status", "pixel_url", "pixel_html"]


def sheet_path(campaign: Campaign | int) -> str:
    return f"/api/v1/campaigns/{getattr(campaign, 'id', campaign)}/sendsheet"


def csv_rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.fixture
def codec(app: FastAPI, client: Any) -> TokenCodec:
    found: TokenCodec = app.state.tracker.codec
    return found


@pytest.fixture
def sheet_tree(db: Session, user: User) -> dict[str, Any]:
    with factories.one_commit(db):
        campaign = factories.make_campaign(db, user)
        group, other_group = factories.make_group(db, campaign), factories.make_group(db, campaign)
        full = factories.make_contact(db, group, name='=HYPERLINK("http://evil")')
        anonymous = factories.make_contact(db, group, tracking="anonymous", status="sent")
        off = factories.make_contact(db, group, tracking="off")
        elsewhere = factories.make_contact(db, other_group)
        links = [factories.make_link(db, campaign, f"https://e.com/{i}") for i in range(2)]
        trap = factories.make_link(db, campaign, "http://track.test/")
        trap.trap = True
    return {
        "campaign": campaign,
        "group": group,
        "contacts": (full, anonymous, off, elsewhere),
        "links": links,
        "trap": trap,
    }


def _check_urls(row: dict[str, Any], contact_id: int, links: list[Link], codec: TokenCodec, base: str) -> None:
    pixel_token = row["pixel_url"].removeprefix(base + "/o/").removesuffix(".gif")
    ref = codec.decode_pixel(pixel_token)
    assert ref is not None
    assert row["pixel_html"] == TrackingUrls.img_tag(row["pixel_url"])
    for link in links:
        click = codec.decode_click(row[f"link_{link.id}"].removeprefix(base + "/c/"))
        assert click is not None
        assert (click.link_id, click.contact_id) == (link.id, contact_id)


def test_csv_rows_per_contact_with_a_column_per_link(
    client: Any, db: Session, sheet_tree: dict[str, Any], headers: dict[str, str], codec: TokenCodec, settings: Settings
) -> None:
    full, anonymous, off, elsewhere = sheet_tree["contacts"]
    links: list[Link] = sheet_tree["links"]
    response = client.get(sheet_path(sheet_tree["campaign"]), headers=headers)
    rows = csv_rows(response)
    assert response.headers["content-disposition"] == (
        f'attachment; filename="campaign-{sheet_tree["campaign"].id}-sendsheet.csv"'
    )
    assert list(rows[0]) == [*COLUMNS, *(f"link_{link.id}" for link in links)]  # not the trap link
    assert [int(row["contact_id"]) for row in rows] == [c.id for c in (full, anonymous, off, elsewhere)]
    by_id = {int(row["contact_id"]): row for row in rows}
    for contact in (full, anonymous, elsewhere):
        _check_urls(by_id[contact.id], contact.id, links, codec, settings.public_base_url)
    assert by_id[full.id]["name"] == '\'=HYPERLINK("http://evil")'  # shown, never run as a formula
    assert by_id[anonymous.id]["status"] == "sent"
    assert {k: v for k, v in by_id[off.id].items() if k not in ("contact_id", "email", "status")} == dict.fromkeys(
        [c for c in by_id[off.id] if c not in ("contact_id", "email", "status")], ""
    )
    assert count(db, Pixel, contact_id=off.id) == 0
    assert {count(db, Pixel, contact_id=c.id) for c in (full, anonymous, elsewhere)} == {1}


def test_ndjson_with_filters_and_the_same_pixels_each_time(
    client: Any, db: Session, sheet_tree: dict[str, Any], headers: dict[str, str], codec: TokenCodec, settings: Settings
) -> None:
    full, anonymous, off, _elsewhere = sheet_tree["contacts"]
    group = sheet_tree["group"]
    response = client.get(
        sheet_path(sheet_tree["campaign"]), params={"group_id": group.id, "format": "ndjson"}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [row["contact_id"] for row in rows] == [full.id, anonymous.id, off.id]
    assert rows[2]["pixel_url"] is None
    assert rows[2][f"link_{sheet_tree['links'][0].id}"] is None
    _check_urls(rows[0], full.id, sheet_tree["links"], codec, settings.public_base_url)
    db.commit()
    pixels = sorted(db.scalars(select(Pixel.id)))
    sent = client.get(
        sheet_path(sheet_tree["campaign"]),
        params={"group_id": group.id, "status": "sent", "format": "ndjson"},
        headers=headers,
    )
    (only,) = [json.loads(line) for line in sent.text.splitlines()]
    assert only["contact_id"] == anonymous.id
    assert codec.decode_pixel(only["pixel_url"].rsplit("/", 1)[1].removesuffix(".gif")).pixel_id in pixels  # type: ignore[union-attr]
    assert sorted(db.scalars(select(Pixel.id))) == pixels  # nothing new the second time


def test_a_campaign_without_contacts_or_links_is_a_header(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    campaign = factories.make_campaign(db, user)
    response = client.get(sheet_path(campaign), headers=headers)
    assert response.status_code == 200
    assert response.text == ",".join(COLUMNS) + "\r\n"
    assert client.get(sheet_path(campaign), params={"format": "ndjson"}, headers=headers).text == ""


def test_chunks_cover_every_contact(
    client: Any, db: Session, user: User, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sendprep, "CHUNK", 4)
    with factories.one_commit(db):
        campaign = factories.make_campaign(db, user)
        group = factories.make_group(db, campaign)
        contacts = [factories.make_contact(db, group) for _ in range(10)]
    rows = csv_rows(client.get(sheet_path(campaign), headers=headers))
    assert [int(row["contact_id"]) for row in rows] == [c.id for c in contacts]
    later = csv_rows(client.get(sheet_path(campaign), params={"after_contact_id": contacts[6].id}, headers=headers))
    assert [int(row["contact_id"]) for row in later] == [c.id for c in contacts[7:]]
    assert count(db, Pixel) == 10


@pytest.mark.parametrize(
    "params",
    [{"format": "xlsx"}, {"group_id": "x"}, {"group_id": 0}, {"status": "opened"}, {"scheduled_before": "soon"}],
)
def test_bad_parameters_are_422s(
    client: Any, db: Session, user: User, headers: dict[str, str], params: dict[str, Any]
) -> None:
    campaign = factories.make_campaign(db, user)
    assert_error(client.get(sheet_path(campaign), params=params, headers=headers), 422, "validation_error")


def test_other_tenants_campaign_and_group_are_404s(
    client: Any, db: Session, sheet_tree: dict[str, Any], headers: dict[str, str], other_user: User
) -> None:
    theirs = factories.make_tree(db, other_user)
    assert_error(client.get(sheet_path(theirs["campaign"]), headers=headers), 404, "not_found")
    own_with_their_group = client.get(
        sheet_path(sheet_tree["campaign"]), params={"group_id": theirs["group"].id}, headers=headers
    )
    assert assert_error(own_with_their_group, 404, "not_found")["detail"] == "Group not found."
    assert count(db, Pixel) == 1  # (only their tree's own)
